"""One metric of a sweep against one swept override: ``<sweep_dir>/plot_<y>_vs_<x>.png``.

Reads the sweep's ``summary.csv`` (written by ``sbrun.sweep.SweepSummary`` at the end of
a multirun), takes the value of override ``--x`` from each completed job's overrides and
its metric ``--y``, and plots the mean (± std over jobs that share a point, e.g. seeds)
against it; ``--group`` draws one line per value of another override.

    python scripts/plot_sweep_metric.py outputs/multirun/2026-01-01/12-00-00 --x method.epsilon --y kl_density
    python scripts/plot_sweep_metric.py <dir> --x solver.steps --y w2 --group method.coupling --logx
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def override_value(overrides: str, key: str) -> str | None:
    """The value of ``key=value`` in a space-separated override string (None if absent)."""
    for item in overrides.split():
        k, _, v = item.partition("=")
        if k.lstrip("+~") == key:
            return v
    return None


def as_number(v: str):
    try:
        return float(v)
    except ValueError:
        return v


def collect(summary: Path, x: str, y: str, group: str | None) -> dict:
    """``{group_value: {x_value: [y, ...]}}`` from the completed rows of ``summary``."""
    series: dict = defaultdict(lambda: defaultdict(list))
    with summary.open() as f:
        for row in csv.DictReader(f):
            if row.get("status") != "completed" or not row.get(y):
                continue
            xv = override_value(row["overrides"], x)
            if xv is None:
                continue
            g = override_value(row["overrides"], group) if group else None
            series[g or ""][as_number(xv)].append(float(row[y]))
    return series


def plot(series: dict, x: str, y: str, logx: bool, logy: bool, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, points in series.items():
        xs = sorted(points, key=lambda v: (isinstance(v, str), v))
        means = [statistics.mean(points[v]) for v in xs]
        stds = [statistics.stdev(points[v]) if len(points[v]) > 1 else 0.0 for v in xs]
        pos = xs if all(isinstance(v, float) for v in xs) else list(range(len(xs)))
        ax.errorbar(pos, means, yerr=stds, marker="o", capsize=3, label=name or None)
        if pos is not xs:
            ax.set_xticks(pos, [str(v) for v in xs])
    if logx:
        ax.set_xscale("symlog", linthresh=min((v for p in series.values() for v in p
                                               if isinstance(v, float) and v > 0), default=1.0))
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if any(series):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep_dir", type=Path)
    p.add_argument("--x", required=True, help="swept override, e.g. method.epsilon")
    p.add_argument("--y", required=True, help="metric column of summary.csv, e.g. kl_density")
    p.add_argument("--group", default=None, help="another override: one line per value")
    p.add_argument("--logx", action="store_true", help="symlog x axis (keeps 0)")
    p.add_argument("--logy", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--title", default=None, help="figure title (default: the sweep directory)")
    args = p.parse_args(argv)
    summary = args.sweep_dir / "summary.csv"
    if not summary.exists():
        print(f"{summary} not found (is it a finished sbrun multirun?)", file=sys.stderr)
        return 1
    series = collect(summary, args.x, args.y, args.group)
    if not series:
        print(f"no completed job has both override {args.x} and metric {args.y}", file=sys.stderr)
        return 1
    for name, points in series.items():
        for xv in sorted(points, key=lambda v: (isinstance(v, str), v)):
            vals = points[xv]
            mean = statistics.mean(vals)
            sd = statistics.stdev(vals) if len(vals) > 1 else math.nan
            print(f"{name + ' ' if name else ''}{args.x}={xv}: {args.y}={mean:.4g}"
                  f"{'' if math.isnan(sd) else f' ± {sd:.2g}'} (n={len(vals)})")
    fig = plot(series, args.x, args.y, args.logx, args.logy, args.title or str(args.sweep_dir))
    out = args.out or args.sweep_dir / f"plot_{args.y}_vs_{args.x.replace('.', '_')}.png"
    fig.savefig(out, dpi=110)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
