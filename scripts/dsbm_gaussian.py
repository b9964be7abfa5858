"""The DSBM paper's Gaussian problem: DSBM and DSB against the closed-form bridge (issue 14).

Shi et al. 2023 (Sec. 7.1, ``DSBM-Gaussian.py`` of their code): source ``N(-a 1, I)``,
target ``N(a 1, I)``, ``a = 0.1``, the reference ``dX = sigma dW`` with ``sigma = 1``, here
in ``d = 50``: ``data=gaussian2gaussian data.dim=50 data.cond=1 data.mean0=-0.1
data.mean1=0.1 sde.sigma=1``. Each method is one ordinary ``sbrun`` run (its overrides
below, ``--set METHOD:key=value`` adds more); its ``samples.npz`` (``--n`` held-out source
draws and where the model sent them, one draw each) is scored against the bridge's plan:

* ``kl_1e3``: ``coordinate_plan_kl`` x 1e3 (:mod:`sbrun.metrics.gaussian`): the coordinates'
  ``(x0_i, x1_i)`` pairs pooled, a 2D Gaussian fitted, its KL to the true 2D law times ``d``
  (the KL of the product law; estimation bias ~2.5 / n nats, 0.25e-3 at n = 10 000);
* ``mean``, ``var``, ``cov``: the coordinates' mean and variance of ``x1`` and the
  covariance of ``(x0_i, x1_i)``, against ``a``, 1 and ``(sqrt(5) - 1) / 2`` (the curves of
  the paper's code).

    python scripts/dsbm_gaussian.py --out runs/dsbm_gaussian [--methods dsbm,dsb] [--n 10000]
    python scripts/dsbm_gaussian.py --out runs/dsbm_gaussian --set dsbm:method.imf_iters=20

A method whose run directory already has ``samples.npz`` is scored without training again.
The table goes to stdout and ``<out>/dsbm_gaussian.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's sbrun, whatever is installed

DIM, A, SIGMA = 50, 0.1, 1.0
PROBLEM = ["data=gaussian2gaussian", f"data.dim={DIM}", "data.cond=1", f"data.mean0={-A}",
           f"data.mean1={A}", f"sde.sigma={SIGMA}", "logger=none", "eval.w2_points=2000",
           "eval.oracle=final", "trainer.threads=1", "trainer.checkpoint_every=5000"]
# DSBM: DSBM-IMF (first coupling independent), batch 1024, 100 Euler-Maruyama steps for the
# pairs and for sampling, 4 IMF iterations of 6000 steps per net, and a pair cache of 50 000
# refilled every 2000 steps (the README's table: with the default cache of 10 000 refilled
# every 1000 steps, everything else equal, the KL is 13.3e-3 instead of 2.7e-3)
SETTINGS = {
    "dsbm": ["method=dsbm", "method.first_coupling=independent", "method.imf_iters=4",
             "trainer.steps=6000", "trainer.batch_size=1024", "method.num_steps=100",
             "solver.steps=100", "method.cache_size=50000", "method.cache_refresh=2000",
             "model.hidden=256", "model.depth=2"],
    "dsb": ["method=dsb", "method.ipf_iters=10", "trainer.steps=3000", "trainer.batch_size=128",
            "method.num_steps=20", "model.hidden=256", "model.depth=2"],
}


def run_method(name: str, overrides: list[str], out: Path, n: int) -> tuple[Path, float | None]:
    """One ``sbrun`` run in ``out/name`` (kept if it finished before); its wall seconds."""
    run = out / name
    if (run / "samples.npz").is_file():
        return run, None
    cmd = [sys.executable, "-m", "sbrun", *PROBLEM, *overrides, f"eval.n_samples={n}",
           f"hydra.run.dir={run}"]
    print(" ".join(cmd[2:]), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=os.environ.copy())
    if proc.returncode:
        raise SystemExit(f"{name}: the run failed (exit {proc.returncode}); its log is in {run}")
    return run, time.perf_counter() - t0


def score(run: Path) -> dict[str, float]:
    """The bridge's scores of a run's held-out pairs (module docstring)."""
    from sbrun.data.gaussians import gaussian_pair
    from sbrun.metrics.gaussian import coordinate_plan_kl

    with np.load(run / "samples.npz") as z:
        x0, x1 = (torch.from_numpy(z[k]).double() for k in ("x0", "x1"))
    g0, g1 = gaussian_pair(DIM, 0, mean0=-A, mean1=A, cond=1)  # what PROBLEM's data config builds
    pooled = torch.stack([x0.reshape(-1), x1.reshape(-1)])
    return {"kl_1e3": 1e3 * coordinate_plan_kl(x0, x1, g0, g1, SIGMA),
            "mean": float(x1.mean()), "var": float(x1.var(0).mean()),
            "cov": float(torch.cov(pooled)[0, 1]), "n": x0.shape[0]}


def parse_sets(sets: list[str]) -> dict[str, list[str]]:
    extra: dict[str, list[str]] = {}
    for s in sets:
        method, sep, override = s.partition(":")
        if not sep or method not in SETTINGS:
            raise SystemExit(f"--set {s!r}: expected METHOD:key=value with METHOD in {sorted(SETTINGS)}")
        extra.setdefault(method, []).append(override)
    return extra


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="runs go to OUT/<method>")
    p.add_argument("--methods", default="dsbm,dsb")
    p.add_argument("--n", type=int, default=10_000, help="held-out source draws scored")
    p.add_argument("--set", action="append", default=[], metavar="METHOD:key=value")
    args = p.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(SETTINGS))
    if unknown:
        p.error(f"unknown --methods {unknown}; known: {sorted(SETTINGS)}")
    extra = parse_sets(args.set)
    rows = {}
    for m in methods:
        run, wall = run_method(m, SETTINGS[m] + extra.get(m, []), args.out, args.n)
        rows[m] = {**score(run), "wall_s": wall, "overrides": SETTINGS[m] + extra.get(m, [])}
    c = (5**0.5 - 1) / 2
    print(f"\n| method | KL (x1e-3) | mean (true {A}) | var (true 1) | cov (true {c:.4f}) | n | wall s |")
    print("|---|---|---|---|---|---|---|")
    for m, r in rows.items():
        wall = "kept" if r["wall_s"] is None else f"{r['wall_s']:.0f}"
        print(f"| {m} | {r['kl_1e3']:.2f} | {r['mean']:.4f} | {r['var']:.4f} | {r['cov']:.4f} | "
              f"{r['n']} | {wall} |")
    (args.out / "dsbm_gaussian.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
