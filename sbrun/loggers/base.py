"""One logging protocol; methods return stats, loggers publish them."""

from __future__ import annotations

import json
from pathlib import Path


class Logger:
    """Protocol: every method is optional and must never raise into the run."""

    def log_metrics(self, metrics: dict, step: int) -> None: ...

    def log_figure(self, name: str, fig, step: int) -> None: ...

    def log_summary(self, summary: dict) -> None: ...

    def finish(self) -> None: ...


class MultiLogger(Logger):
    """Fan out to several loggers."""

    def __init__(self, loggers: list[Logger]):
        self.loggers = loggers

    def log_metrics(self, metrics, step):
        for lg in self.loggers:
            lg.log_metrics(metrics, step)

    def log_figure(self, name, fig, step):
        for lg in self.loggers:
            lg.log_figure(name, fig, step)

    def log_summary(self, summary):
        for lg in self.loggers:
            lg.log_summary(summary)

    def finish(self):
        for lg in self.loggers:
            lg.finish()


def _plain(v):
    if hasattr(v, "item"):
        return v.item()
    return v


class JsonlLogger(Logger):
    """``metrics.jsonl`` (one object per evaluation) and ``metrics.json`` (final)."""

    def __init__(self, run_dir: str | Path, append: bool = False):
        self.dir = Path(run_dir)
        self.path = self.dir / "metrics.jsonl"
        if not append and self.path.exists():
            self.path.unlink()

    def log_metrics(self, metrics, step):
        row = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def log_summary(self, summary):
        out = {k: _plain(v) for k, v in summary.items()}
        (self.dir / "metrics.json").write_text(json.dumps(out, indent=2) + "\n")
