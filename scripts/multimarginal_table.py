"""The all-pairs table of a ``method=multimarginal`` run: W2 of the straight-edge
transport ``i -> j`` for every ordered pair of data marginals, its floor and the ratio.

    python scripts/multimarginal_table.py RUN_DIR              # from metrics.json
    python scripts/multimarginal_table.py RUN_DIR --points 2000  # recomputed from the checkpoint

``--points`` reloads the run (config + EMA weights, as ``sbrun-transport`` does) and
recomputes the table on that many held-out points per marginal with the run's solver.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path


def recompute(run_dir: Path, points: int) -> dict:
    import torch
    from omegaconf import OmegaConf

    from sbrun.pipeline.build import build
    from sbrun.pipeline.checkpoint import load_checkpoint
    from sbrun.solvers import time_grid

    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    cfg.device = "cpu"
    c = build(cfg)
    c.nets.load_state_dict(load_checkpoint(run_dir / "checkpoints" / "last.pt",
                                           map_location="cpu")["ema"])
    c.nets.eval()
    c.method._solver, c.method._grid = c.solver, time_grid(cfg.solver.steps)
    with torch.no_grad():
        return c.method.pair_table(c.nets, points)


def table(metrics: dict, names: list[str] | None = None) -> str:
    pairs = sorted({(int(a), int(b)) for a, b in re.findall(r"^w2_(\d+)to(\d+)$",
                                                             "\n".join(metrics), re.M)})
    if not pairs:
        return "no all-pairs entries (was method.pair_points 0?)"
    label = (lambda k: names[k]) if names else str
    rows = ["| i -> j | w2 | w2_floor | ratio |", "|---|---|---|---|"]
    for i, j in pairs:
        key = f"{i}to{j}"
        rows.append(f"| {label(i)} -> {label(j)} | {metrics['w2_' + key]:.4f} | "
                    f"{metrics['w2_floor_' + key]:.4f} | {metrics['w2_ratio_' + key]:.3f} |")
    worst = max(metrics[f"w2_ratio_{i}to{j}"] for i, j in pairs)
    rows.append(f"\nmax ratio {worst:.3f} over {len(pairs)} ordered pairs")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--points", type=int, default=0, help="recompute on this many points")
    a = p.parse_args(argv)
    names = None
    cfg_path = a.run_dir / ".hydra" / "config.yaml"
    if cfg_path.is_file():
        from omegaconf import OmegaConf

        names = OmegaConf.select(OmegaConf.load(cfg_path), "data.marginals")
        names = list(names) if names is not None else None
    if a.points:
        metrics = recompute(a.run_dir, a.points)
    else:
        path = a.run_dir / "metrics.json"
        if not path.is_file():
            print(f"{path} not found", file=sys.stderr)
            return 2
        metrics = json.loads(path.read_text())
    print(table(metrics, names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
