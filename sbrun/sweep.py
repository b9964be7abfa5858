"""Multirun summary: a Hydra callback that gathers a sweep when it ends.

It scans the sweep directory, so it works with every launcher (basic, joblib,
submitit): each job writes ``status.json`` (and ``metrics.json`` when it finished).
Outputs in the sweep directory:

* ``summary.csv``: one row per job in sweep order (job, overrides, status, error,
  final metrics, wall time);
* ``summary_by_setting.csv``: mean ± std over seeds for each setting (overrides
  without ``seed``);
* ``panel_<figure>.png``: each job's main figure side by side in sweep order;
* a rich table in the console, and the table logged to W&B (offline by default) in
  the sweep's group.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

FAILED_JOBS = 0  # set by the callback; ``sbrun`` exits non-zero when a job failed
MAIN_METRICS = ("w2", "w2_floor", "w2_ratio", "kl", "nfe", "wall_seconds")


def _job_dirs(sweep_dir: Path) -> list[Path]:
    dirs = [p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")]
    return sorted(dirs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0,
                                       p.name))


def read_job(job_dir: Path) -> dict[str, Any]:
    """One summary row: overrides, status (completed / failed / incomplete), metrics."""
    overrides = list(OmegaConf.load(job_dir / ".hydra" / "overrides.yaml"))
    row: dict[str, Any] = {"job": job_dir.name, "overrides": " ".join(overrides)}
    status_file, metrics_file = job_dir / "status.json", job_dir / "metrics.json"
    status = json.loads(status_file.read_text()) if status_file.exists() else {}
    row["status"] = status.get("status", "completed" if metrics_file.exists() else "incomplete")
    row["error"] = status.get("error", "")
    if metrics_file.exists() and row["status"] == "completed":
        row.update(json.loads(metrics_file.read_text()))
    row["_overrides"] = overrides
    return row


def aggregate_seeds(rows: list[dict]) -> list[dict]:
    """Mean and std of every numeric metric over the seeds of each setting."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        key = " ".join(o for o in r["_overrides"] if not o.startswith("seed="))
        groups[key].append(r)
    out = []
    for key, rs in groups.items():
        done = [r for r in rs if r["status"] == "completed"]
        agg: dict[str, Any] = {"setting": key or "(base)", "runs": len(rs), "completed": len(done)}
        keys = sorted({k for r in done for k, v in r.items()
                       if isinstance(v, (int, float)) and not k.startswith("_")})
        for k in keys:
            vals = [float(r[k]) for r in done if isinstance(r.get(k), (int, float))]
            mean = sum(vals) / len(vals)
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / max(1, len(vals) - 1)) \
                if len(vals) > 1 else 0.0
            agg[f"{k}_mean"], agg[f"{k}_std"] = mean, std
        out.append(agg)
    return out


def write_csv(rows: list[dict], path: Path, first: tuple[str, ...]) -> None:
    cols = list(first) + sorted({k for r in rows for k in r if k not in first and not k.startswith("_")})
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)


def panel_figure(rows: list[dict], sweep_dir: Path, figure: str):
    """Each job's ``figures/<figure>.png`` side by side, titled by its overrides."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    items = [(r, sweep_dir / r["job"] / "figures" / f"{figure}.png") for r in rows]
    items = [(r, p) for r, p in items if p.exists()]
    if not items:
        return None
    ncol = min(len(items), 4)
    nrow = math.ceil(len(items) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.5 * ncol, 4.2 * nrow), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    titles = dict(zip((r["job"] for r in rows), varying(rows, sep="\n")))  # one override a line
    for ax, (r, p) in zip(axes.flat, items):
        ax.imshow(mpimg.imread(p))
        ax.set_title(titles[r["job"]], fontsize=10)
    fig.tight_layout()
    return fig


def varying(rows: list[dict], sep: str = " ") -> list[str]:
    """For each row, only the overrides that differ between jobs (for compact titles),
    joined by ``sep``."""
    common = set.intersection(*(set(r["_overrides"]) for r in rows)) if rows else set()
    return [sep.join(o for o in r["_overrides"] if o not in common) or "(base)" for r in rows]


def print_table(rows: list[dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("job", "setting", "status", *MAIN_METRICS):
        table.add_column(col, justify="right" if col in MAIN_METRICS else "left")
    for r, setting in zip(rows, varying(rows)):
        cells = [str(r["job"]), setting, r["status"] if not r["error"]
                 else f"[red]{r['status']}: {r['error'][:60]}[/red]"]
        cells += [f"{r[k]:.4g}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in MAIN_METRICS]
        table.add_row(*cells)
    import sys

    Console(stderr=True, width=None if sys.stderr.isatty() else 160).print(table)


def figure_names(sweep_dir: Path, rows: list[dict]) -> list[str]:
    """Names of the final figures the jobs wrote (per-evaluation ones excluded)."""
    names = {p.stem for r in rows for p in (sweep_dir / r["job"] / "figures").glob("*.png")}
    return sorted(n for n in names if not n.startswith("eval_"))


def summarize(sweep_dir: str | Path, logger_cfg: DictConfig | None = None,
              figures: tuple[str, ...] | None = None) -> list[dict]:
    """Write the sweep summary files for ``sweep_dir``; returns the rows.

    ``figures``: which figures get a side-by-side panel (default: all final figures).
    """
    sweep_dir = Path(sweep_dir)
    rows = [read_job(d) for d in _job_dirs(sweep_dir)]
    if not rows:
        return rows
    figures = figures or figure_names(sweep_dir, rows)
    write_csv(rows, sweep_dir / "summary.csv", ("job", "overrides", "status", "error"))
    agg = aggregate_seeds(rows)
    write_csv(agg, sweep_dir / "summary_by_setting.csv", ("setting", "runs", "completed"))
    import matplotlib.pyplot as plt

    for name in figures:
        fig = panel_figure(rows, sweep_dir, name)
        if fig is not None:
            fig.savefig(sweep_dir / f"panel_{name}.png", dpi=100)
            plt.close(fig)
    failed = sum(r["status"] != "completed" for r in rows)
    print_table(rows, f"sweep {sweep_dir} — {len(rows) - failed}/{len(rows)} completed")
    if logger_cfg is not None:
        _log_wandb(rows, sweep_dir, logger_cfg)
    return rows


def _log_wandb(rows: list[dict], sweep_dir: Path, lc: DictConfig) -> None:
    """The summary table as one W&B run in the sweep's group; never raises."""
    if lc.get("mode", "offline") == "disabled":
        return
    try:
        import wandb

        cols = ["job", "overrides", "status", "error", *MAIN_METRICS]
        table = wandb.Table(columns=cols, data=[[r.get(c) for c in cols] for r in rows])
        run = wandb.init(dir=str(sweep_dir), mode=lc.mode, project=lc.project, entity=lc.get("entity"),
                         group=lc.get("group") or sweep_dir.name, name=f"summary-{sweep_dir.name}",
                         job_type="sweep-summary", reinit="finish_previous",
                         settings=wandb.Settings(init_timeout=30, console="off"))
        run.log({"sweep_summary": table})
        run.finish()
    except Exception as e:  # noqa: BLE001 - tracking never ends a sweep
        log.warning("W&B sweep summary not logged: %s", e)


class SweepSummary(Callback):
    """Hydra callback: ``on_multirun_end`` -> :func:`summarize` on the sweep directory."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global FAILED_JOBS
        try:
            rows = summarize(config.hydra.sweep.dir, config.get("logger"))
            FAILED_JOBS = sum(r["status"] != "completed" for r in rows)
        except Exception as e:  # noqa: BLE001
            log.warning("sweep summary failed: %s", e)

