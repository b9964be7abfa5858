"""Minibatch entropic plans: POT's sinkhorn_log, sbrun's log-domain path and its float32
scaling-domain path, measured in one run.

Batches of the 2D protocol (torchcfm's data scaling: ``gaussian`` to ``torchcfm_8gaussians``
or ``torchcfm_moons``), float32 as training draws them, uniform weights, sigma 0.1
(eps = sigma^2, POT reg = 2 sigma^2 on squared distances), tolerance ``--tol`` on
``|P 1 - a|_1 + |P^T 1 - b|_1``. Per batch size, ``--draws`` batches; per batch:

* ``POT``: ``ot.sinkhorn(method="sinkhorn_log")`` stopped at ``tol / sqrt(n)`` on its L2
  column error (which implies ours), timed once (slow: only ``n <= --pot-max-n``);
* ``log``: the log-domain path minibatch training took before the scaling-domain path
  (float64 cost, :func:`sbrun.couplings.pot.sinkhorn_log` with ``MINIBATCH_SINKHORN``);
* ``scaling``: :func:`sbrun.couplings.minibatch.scaling_plan` (float32 cost and
  :func:`sbrun.couplings.scaling.sinkhorn_scaling`), what training runs now.

Both sbrun paths include the cost matrix; their ``--repeats`` runs alternate (same load)
and the median is reported. Errors, ``|P - P_POT|_1`` and ``|P - P*|_1`` (``P*``: sbrun's
float64 log-domain plan at tol 1e-9) are maxima over the draws; a Markdown table is printed.

    OMP_NUM_THREADS=1 python scripts/bench_sinkhorn.py [--sizes 128 256 512 1024] [--pot-max-n 256]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings

import numpy as np
import ot
import torch

from sbrun.couplings.base import half_sq_dists
from sbrun.couplings.minibatch import MINIBATCH_SINKHORN, scaling_plan
from sbrun.couplings.pot import sinkhorn_log
from sbrun.data.toy2d import make_toy

TASKS = {"N(0,I)->8gaussians": ("gaussian", "torchcfm_8gaussians"),
         "N(0,I)->moons": ("gaussian", "torchcfm_moons")}


def _problem(x0, x1):
    """Float64 cost and uniform weights."""
    C = half_sq_dists(x0, x1)
    n, m = C.shape
    return C, torch.full((n,), 1.0 / n, dtype=C.dtype), torch.full((m,), 1.0 / m, dtype=C.dtype)


def log_plan(x0, x1, sigma: float, tol: float, max_iter: int) -> torch.Tensor:
    return sinkhorn_log(*_problem(x0, x1), sigma**2, tol=tol, max_iter=max_iter, **MINIBATCH_SINKHORN)[0]


def _dist(p, q) -> float:
    return float(np.abs(np.asarray(p, np.float64) - np.asarray(q, np.float64)).sum())


def _worst(table: dict, key: str, value: float) -> None:
    table[key] = max(table.get(key, value), value)


def pot_plan(x0, x1, sigma: float, tol: float) -> np.ndarray:
    M = 2.0 * half_sq_dists(x0, x1).numpy()
    n, m = M.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ot.sinkhorn(np.full(n, 1.0 / n), np.full(m, 1.0 / m), M, 2.0 * sigma**2,
                           method="sinkhorn_log", stopThr=tol / math.sqrt(m), numItermax=1_000_000)


def marginal_error(plan) -> float:
    p = np.asarray(plan, dtype=np.float64)
    n, m = p.shape
    return float(np.abs(p.sum(1) - 1.0 / n).sum() + np.abs(p.sum(0) - 1.0 / m).sum())


def cell(task: str, n: int, args) -> dict:
    """Times and errors of the three solvers on ``--draws`` batches of size ``n``."""
    src, tgt = (make_toy(name) for name in TASKS[task])
    g = torch.Generator().manual_seed(args.seed)
    solvers = {"log": lambda x0, x1: log_plan(x0, x1, args.sigma, args.tol, args.max_iter),
               "scaling": lambda x0, x1: scaling_plan(x0, x1, args.sigma, args.tol, args.max_iter, False)}
    times = {k: [] for k in ("pot", *solvers)}
    err, diff = {k: 0.0 for k in times}, {}
    for _ in range(args.draws):
        x0, x1 = src.sample(n, g).float(), tgt.sample(n, g).float()
        plans = {}
        for r in range(args.repeats):
            for key in (solvers if r % 2 == 0 else reversed(list(solvers))):
                t0 = time.perf_counter()
                plans[key] = solvers[key](x0, x1)
                times[key].append(time.perf_counter() - t0)
        plans["*"] = sinkhorn_log(*_problem(x0, x1), args.sigma**2, tol=1e-9, max_iter=100_000)[0]
        ref = None
        if n <= args.pot_max_n:
            t0 = time.perf_counter()
            ref = pot_plan(x0, x1, args.sigma, args.tol)
            times["pot"].append(time.perf_counter() - t0)
            err["pot"] = max(err["pot"], marginal_error(ref))
            plans["pot"] = ref
        star = plans.pop("*").numpy()
        for key, plan in plans.items():
            err[key] = max(err[key], marginal_error(plan))
            _worst(diff, key + "*", _dist(plan, star))
            if ref is not None and key != "pot":
                _worst(diff, key, _dist(plan, ref))
    ms = {k: 1e3 * statistics.median(v) if v else math.nan for k, v in times.items()}
    return {"task": task, "n": n, "ms": ms, "err": err, "diff": diff}


def row(c: dict) -> str:
    ms, err, diff = c["ms"], c["err"], c["diff"]

    def fmt(v, spec=".1e"):
        return "–" if v is None or math.isnan(v) else format(v, spec)

    pot = not math.isnan(ms["pot"])
    return (f"| {c['task']} | {c['n']} | {fmt(ms['pot'], '.0f')} | {ms['log']:.1f} | "
            f"{ms['scaling']:.1f} | {ms['log'] / ms['scaling']:.1f} | "
            f"{fmt(err['pot'] if pot else None)} / {err['log']:.1e} / {err['scaling']:.1e} | "
            f"{fmt(diff.get('pot*'))} / {fmt(diff['log*'])} / {fmt(diff['scaling*'])} | "
            f"{fmt(diff.get('log'))} / {fmt(diff.get('scaling'))} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--targets", nargs="*", default=["8gaussians", "moons"], choices=["8gaussians", "moons"])
    p.add_argument("--sizes", nargs="*", type=int, default=[128, 256, 512, 1024])
    p.add_argument("--sigma", type=float, default=0.1)
    p.add_argument("--tol", type=float, default=1e-4, help="minibatch_pair's default")
    p.add_argument("--max-iter", type=int, default=1000, help="minibatch_pair's default")
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--pot-max-n", type=int, default=256, help="POT only up to this size (slow)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(f"sigma {args.sigma}, tol {args.tol}, {args.draws} draws x {args.repeats} repeats, "
          "ms per plan (median); errors, |P - P*|_1 and |P - P_POT|_1: max over draws")
    print("| task | n | POT ms | log ms | scaling ms | log / scaling | marginal error POT / log / "
          "scaling | \\|P - P*\\| POT / log / scaling | \\|P - P_POT\\| log / scaling |")
    print("|---|---|---|---|---|---|---|---|---|")
    for task in (f"N(0,I)->{t}" for t in args.targets):
        for n in args.sizes:
            print(row(cell(task, n, args)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
