"""Table of solver x steps -> W2, NFE, seconds for trained diffusion runs (issue 3's table).

    python scripts/diffusion_solvers.py RUN_DIR [RUN_DIR ...] [--solvers ancestral:1000 ode:25 ...]

Each RUN_DIR is a finished ``sbrun method=ddpm|score-sde`` run; its EMA weights are loaded
and its held-out evaluation is repeated with every ``solver:steps`` (solver options as
``name:steps:key=value,...``). Prints a Markdown table and writes ``solvers.json`` per run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

DEFAULT = ["ancestral:1000", "ancestral:100", "euler_maruyama:1000", "euler_maruyama:100",
           "heun_sde:100", "pc:100", "euler:100", "heun:50", "rk4:25", "ode:100:scheme=dopri5"]


def parse(spec: str) -> tuple[str, int, dict]:
    name, steps, *rest = spec.split(":")
    opts = {}
    for kv in (rest[0].split(",") if rest else []):
        k, v = kv.split("=")
        opts[k] = type(_default(k))(v) if _default(k) is not None else v
    return name, int(steps), opts


def _default(key: str):
    from sbrun.config import SolverConfig

    return getattr(SolverConfig(), key, None)


def evaluate(run_dir: Path, specs: list[str], threads: int) -> list[dict]:
    import torch
    from omegaconf import OmegaConf

    from sbrun.pipeline.build import build
    from sbrun.pipeline.checkpoint import load_checkpoint
    from sbrun.pipeline.evaluator import Evaluator
    from sbrun.solvers import configure, get_solver

    torch.set_num_threads(threads)
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    cfg.device = "cpu"
    c = build(cfg)
    c.nets.load_state_dict(load_checkpoint(run_dir / "checkpoints" / "last.pt",
                                           map_location="cpu")["ema"])
    c.method.likelihood = False  # the table is about sampling
    rows = []
    for spec in specs:
        name, steps, opts = parse(spec)
        solver = configure(get_solver(name), **opts)
        ev = Evaluator(cfg.eval, c.method, c.data, solver, steps, c.device, cfg.seed)
        t0 = time.perf_counter()
        m = ev(c.nets, 0)
        rows.append({"run": str(run_dir), "method": c.method.name, "data": c.problem.name,
                     "solver": name + (f"({','.join(f'{k}={v}' for k, v in opts.items())})"
                                       if opts else ""),
                     "steps": steps, "w2": m["w2"], "w2_floor": m["w2_floor"],
                     "w2_ratio": m["w2_ratio"], "nfe": m["nfe"],
                     "seconds": time.perf_counter() - t0})
    (run_dir / "solvers.json").write_text(json.dumps(rows, indent=1))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--solvers", nargs="+", default=DEFAULT)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    print("| method | data | solver | steps | W2 | w2_floor | ratio | NFE | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in a.runs:
        for r in evaluate(run, a.solvers, a.threads):
            print(f"| {r['method']} | {r['data']} | {r['solver']} | {r['steps']} | {r['w2']:.4f} "
                  f"| {r['w2_floor']:.4f} | {r['w2_ratio']:.2f} | {r['nfe']} | {r['seconds']:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
