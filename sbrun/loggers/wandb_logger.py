"""Weights & Biases, offline by default; a W&B failure never stops a run."""

from __future__ import annotations

import logging
import os

from sbrun.loggers.base import Logger

log = logging.getLogger(__name__)


class WandbLogger(Logger):
    """Wraps ``wandb.init``; every call is guarded and W&B errors become warnings.

    Args:
        mode: ``offline`` (default: writes under the run dir, no network),
            ``online``, or ``disabled``.
    """

    def __init__(self, run_dir, config: dict, mode: str = "offline", project: str = "sbrun",
                 entity=None, group=None, tags=(), name=None, log_figures: bool = True):
        self.run = None
        self.log_figures = log_figures
        if mode == "disabled":
            return
        try:
            os.environ.setdefault("WANDB_SILENT", "true")
            import wandb

            self._wandb = wandb
            self.run = wandb.init(
                dir=str(run_dir), config=config, mode=mode, project=project, entity=entity,
                group=group, tags=list(tags) or None, name=name, reinit="finish_previous",
                settings=wandb.Settings(init_timeout=30, console="off"),
            )
        except Exception as e:  # noqa: BLE001 - tracking must never end a run
            log.warning("W&B disabled for this run (%s: %s)", type(e).__name__, e)
            self.run = None

    def _guard(self, fn, *a, **kw):
        if self.run is None:
            return
        try:
            fn(*a, **kw)
        except Exception as e:  # noqa: BLE001
            log.warning("W&B call failed (%s); continuing without it", e)
            self.run = None

    def log_metrics(self, metrics, step):
        self._guard(self.run.log if self.run else None, dict(metrics), step=int(step))

    def log_figure(self, name, fig, step):
        if self.log_figures and self.run is not None:
            self._guard(self.run.log, {f"figures/{name}": self._wandb.Image(fig)}, step=int(step))

    def log_summary(self, summary):
        if self.run is not None:
            self._guard(self.run.summary.update, dict(summary))

    def finish(self):
        self._guard(self.run.finish if self.run else None)
