"""Couplings x solver steps: W2, path energy and time of flow-matching-type methods.

Each (setting, seed) is trained once through sbrun's own pipeline (build -> Trainer),
then its EMA field is evaluated with Euler (or ``--solvers``) on several step counts: W2 against held-out
target draws (POT ``emd2``), the sampling floor, the path energy ``E int |v|^2 dt`` and
the normalised path energy of Tong et al. (``method.metrics``). Times: training seconds
and seconds per evaluation. Results: a markdown table (mean +- std over seeds) on stdout
and, with ``--csv``, one row per (setting, seed, steps).

    # the closing-note table of issue 6 (8gaussians -> moons, method defaults)
    python scripts/bench_cfm.py --settings method.coupling=independent method.coupling=exact_ot \\
        "method.coupling=entropic_ot method.coupling_sigma=0.1" --steps 1 2 5 10 20 100
    # torchcfm's 2D protocol (see conf/experiment/cfm_protocol_2d.yaml; torchcfm itself: bench_peers.py)
    python scripts/bench_cfm.py --base +experiment=cfm_protocol_2d \\
        --settings data=torchcfm_gaussian2moons data=torchcfm_gaussian28gaussians \\
        data=torchcfm_moons28gaussians --cross method.coupling=independent,exact_ot,entropic_ot \\
        --steps 100

Every extra ``--base`` override applies to all settings (e.g. ``trainer.steps=4000``).
``--cross k=a,b`` multiplies the settings by the values of ``k``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from sbrun.config import compose


def run_one(overrides: list[str], steps_list: list[int], solvers: list[str]) -> list[dict]:
    """Train once with ``overrides``; evaluate with each solver at each of ``steps_list``."""
    from sbrun.pipeline.build import build
    from sbrun.pipeline.evaluator import Evaluator
    from sbrun.pipeline.trainer import Trainer
    from sbrun.solvers import get_solver

    cfg = compose(["logger=none", "trainer.progress=false", "trainer.checkpoint_every=0", *overrides])
    if cfg.trainer.threads > 0:
        torch.set_num_threads(cfg.trainer.threads)
    c = build(cfg)
    with tempfile.TemporaryDirectory() as d:
        trainer = Trainer(cfg.trainer, c.method, c.nets, c.data, Path(d), c.device, cfg.seed)
        t0 = time.perf_counter()
        trainer.fit()
        train_s = time.perf_counter() - t0
    rows = []
    for solver, steps in ((s, n) for s in solvers for n in steps_list):
        ev = Evaluator(cfg.eval, c.method, c.data, get_solver(solver), steps, c.device, cfg.seed)
        t0 = time.perf_counter()
        m = ev(trainer.ema, trainer.step)
        rows.append({"solver": solver, "steps": steps, "train_s": train_s,
                     "eval_s": time.perf_counter() - t0,
                     **{k: m.get(k, float("nan")) for k in
                        ("w2", "w2_floor", "w2_ratio", "path_energy", "normalized_path_energy",
                         "ot_cost", "nfe")}})
    return rows


def expand(settings: list[str], cross: list[str]) -> list[list[str]]:
    out = [s.split() for s in settings] or [[]]
    for item in cross:
        key, _, values = item.partition("=")
        out = [s + [f"{key}={v}"] for s in out for v in values.split(",")]
    return out


def fmt(vals: list[float], digits: int = 3) -> str:
    vals = [float(v) for v in vals]
    if any(v != v for v in vals):  # NaN: a metric this method does not report
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", nargs="*", default=["data=8gaussians2moons", "trainer.threads=1"])
    p.add_argument("--settings", nargs="*", default=["method.coupling=independent",
                                                      "method.coupling=exact_ot"])
    p.add_argument("--cross", nargs="*", default=[])
    p.add_argument("--steps", nargs="*", type=int, default=[1, 2, 5, 10, 20, 100])
    p.add_argument("--solvers", nargs="*", default=["euler"],
                   help="sbrun solver names (euler, heun, rk4, euler_maruyama, ...)")
    p.add_argument("--seeds", nargs="*", type=int, default=[0])
    p.add_argument("--csv", type=Path, default=None)
    args = p.parse_args(argv)
    results = []
    for setting in expand(args.settings, args.cross):
        for seed in args.seeds:
            for r in run_one([*args.base, *setting, f"seed={seed}"], args.steps, args.solvers):
                results.append({"setting": " ".join(setting), "seed": seed, **r})
                print(f"[{r['train_s']:.0f}s] {' '.join(setting)} seed={seed} {r['solver']} "
                      f"steps={r['steps']}: "
                      f"w2={r['w2']:.4f} floor={r['w2_floor']:.4f} pe={r['path_energy']:.3f} "
                      f"npe={r['normalized_path_energy']:.3f}",
                      file=sys.stderr, flush=True)
    if args.csv:
        with args.csv.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(results[0]))
            w.writeheader()
            w.writerows(results)
    print("| setting | solver | steps | W2 | w2_floor | W2/floor | path energy | NPE | "
          "train s | eval s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    order = [r["setting"] for r in results]
    keys = sorted({(r["setting"], r["solver"], r["steps"]) for r in results},
                  key=lambda k: (order.index(k[0]), args.solvers.index(k[1]), k[2]))
    for setting, solver, steps in keys:
        rs = [r for r in results if (r["setting"], r["solver"], r["steps"]) == (setting, solver, steps)]
        col = {k: [r[k] for r in rs] for k in rs[0]}
        print(f"| {setting} | {solver} | {steps} | {fmt(col['w2'])} | {fmt(col['w2_floor'])} | "
              f"{fmt(col['w2_ratio'], 2)} | {fmt(col['path_energy'])} | "
              f"{fmt(col['normalized_path_energy'], 2)} | {fmt(col['train_s'], 0)} | "
              f"{fmt(col['eval_s'], 1)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
