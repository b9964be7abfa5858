"""Static entropic OT: sbrun's coupling front door next to POT called directly.

For n = m in {1000, 2000, 5000} uniform points in [0, 1]^2 and sigma in {1, 0.1, 0.01,
0.001} (eps = sigma^2, POT reg = 2 sigma^2 on squared distances), times:

* ``sbrun sinkhorn_log``: ``solve_coupling(method="sinkhorn_log")`` (log domain, epsilon
  scaling, convergence check on the marginals, tol 1e-6);
* ``POT sinkhorn_log``: ``ot.sinkhorn(a, b, M, 2 sigma^2, method="sinkhorn_log")`` with
  the same tolerance and an iteration cap;
* ``sbrun exact`` / ``POT emd``: the sigma -> 0 limit through our wrapper and directly
  (the wrapper's overhead ratio).

Each cell reports seconds, the final marginal error and whether the plan is usable
(finite, non-zero). Measured in one process; CPU, or CUDA with ``--device cuda``.

    python scripts/bench_eot.py [--sizes 1000,2000] [--sigmas 1,0.1,0.01,0.001] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
import warnings

import ot
import torch

from sbrun.couplings import solve_coupling


def _err(plan: torch.Tensor, n: int) -> float:
    return float((plan.sum(1) - 1 / n).abs().sum() + (plan.sum(0) - 1 / n).abs().sum())


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,2000,5000")
    p.add_argument("--sigmas", default="1,0.1,0.01,0.001")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--pot-max-iter", type=int, default=5000)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    warnings.simplefilter("ignore")
    print(f"device={a.device} threads={torch.get_num_threads()} POT={ot.__version__}")
    print("| n | sigma | sbrun sinkhorn_log s (err) | POT sinkhorn_log s (err, usable) | ratio |")
    print("|---|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    for n in (int(s) for s in a.sizes.split(",")):
        x = torch.rand(n, 2, generator=g, dtype=torch.float64).to(a.device)
        y = torch.rand(n, 2, generator=g, dtype=torch.float64).to(a.device)
        w = torch.full((n,), 1 / n, dtype=torch.float64, device=a.device)
        M = torch.cdist(x, y) ** 2
        for sigma in (float(s) for s in a.sigmas.split(",")):
            ts, res = timed(solve_coupling, x, y, method="sinkhorn_log", sigma=sigma)
            tp, plan = timed(ot.sinkhorn, w, w, M, 2 * sigma**2, method="sinkhorn_log",
                             numItermax=a.pot_max_iter, stopThr=1e-6)
            usable = bool(torch.isfinite(plan).all()) and float(plan.sum()) > 0.5
            print(f"| {n} | {sigma:g} | {ts:.2f} ({res.err:.1e}) | {tp:.2f} "
                  f"({_err(plan, n):.1e}, {'yes' if usable else 'NO'}) | {ts / tp:.2f} |",
                  flush=True)
        te, res = timed(solve_coupling, x, y, method="exact")
        tpe, _ = timed(ot.emd, w, w, M / 2)
        print(f"| {n} | exact | {te:.2f} (sbrun) | {tpe:.2f} (POT emd) | {te / tpe:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
