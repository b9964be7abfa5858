"""The guidance trade-off of a sweep over ``sampler.guidance``: class accuracy against FID.

    sbrun -m +experiment=guidance_mnist_cpu resume=<trained run> sampler.guidance=-1,0,0.5,1,2,4 ...
    python scripts/guidance_tradeoff.py <multirun dir> [--x fid_classifier] [--y class_acc]

Reads the sweep's ``summary.csv`` (``sbrun.sweep.SweepSummary``) and each job's
``samples.npz``; writes ``<multirun dir>/guidance_tradeoff.png`` (``--y`` against ``--x``,
one point per ``w``, labelled) and ``guidance_samples.png`` (per ``w``: one row per class,
8 samples each), and prints the table. On 2D runs use e.g. ``--x w2 --y w2_ratio_class_mean``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plot_sweep_metric import override_value  # noqa: E402


def read(summary: Path, x: str, y: str) -> list[dict]:
    """``[{w, x, y, job}]`` of the completed jobs, sorted by ``w``."""
    rows = []
    with summary.open() as f:
        for row in csv.DictReader(f):
            w = override_value(row["overrides"], "sampler.guidance")
            if row.get("status") == "completed" and w is not None and row.get(x) and row.get(y):
                rows.append({"w": float(w), "x": float(row[x]), "y": float(row[y]),
                             "job": row["job"]})
    return sorted(rows, key=lambda r: r["w"])


def tradeoff_figure(rows: list[dict], x: str, y: str, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot([r["x"] for r in rows], [r["y"] for r in rows], "o-")
    for r in rows:
        ax.annotate(f"w={r['w']:g}", (r["x"], r["y"]), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def sweep_title(sweep: Path, job: str) -> str:
    """What a reader needs: method, data, training steps, sampler x steps (from the job's
    composed config); the directory when that is unreadable."""
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.load(sweep / job / ".hydra" / "config.yaml")
        method = str(cfg.method._target_).rsplit(".", 1)[-1]
        return (f"guidance sweep: {method}, {cfg.data.name}, {cfg.trainer.steps} train steps, "
                f"{cfg.solver.name} x {cfg.solver.steps}")
    except Exception:  # noqa: BLE001 (a title is not worth failing the figure)
        return str(sweep)


def samples_figure(sweep: Path, rows: list[dict], per_class: int = 8):
    """Per ``w`` a column: one row of ``per_class`` images per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sbrun.plots.images import tile

    fig, axes = plt.subplots(1, len(rows), figsize=(2.2 * len(rows), 2.8), squeeze=False)
    for ax, r in zip(axes[0], rows):
        data = np.load(sweep / r["job"] / "samples.npz")
        x, lab = data["x1"], data["y"]
        if x.ndim != 4:
            ax.scatter(x[:, 0], x[:, 1], s=2, c=lab, cmap="tab10")
        else:
            grid = np.concatenate([x[lab == c][:per_class] for c in np.unique(lab)])
            ax.imshow(tile(grid, per_class)[..., 0], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"w={r['w']:g}", fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep_dir", type=Path)
    p.add_argument("--x", default="fid_classifier")
    p.add_argument("--y", default="class_acc")
    args = p.parse_args(argv)
    summary = args.sweep_dir / "summary.csv"
    if not summary.exists():
        print(f"{summary} not found (is it a finished sbrun multirun?)", file=sys.stderr)
        return 1
    rows = read(summary, args.x, args.y)
    if not rows:
        print(f"no completed job has sampler.guidance, {args.x} and {args.y}", file=sys.stderr)
        return 1
    for r in rows:
        print(f"w={r['w']:g}: {args.y}={r['y']:.4g} {args.x}={r['x']:.4g}")
    tradeoff_figure(rows, args.x, args.y, sweep_title(args.sweep_dir, rows[0]["job"])).savefig(
        args.sweep_dir / "guidance_tradeoff.png", dpi=110)
    samples_figure(args.sweep_dir, rows).savefig(args.sweep_dir / "guidance_samples.png", dpi=110)
    print(args.sweep_dir / "guidance_tradeoff.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
