"""``hydra/sweeper=sbrun`` (sbrun's default): Hydra's basic sweeper, except that a job whose
overrides do not compose (``trainer.steps=20,abc,30``) fails alone, recorded like a runtime
failure (``<sweep dir>/<job>/status.json``), and the sweep and its summary go on.

Hydra loads sweepers only from the ``hydra_plugins`` namespace package, hence this module.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


class _FilteringLauncher:
    """Wraps a launcher: jobs whose overrides do not compose are recorded as failed job
    directories (``status.json``), the others are launched with their sweep numbers."""

    def __init__(self, launcher, sweeper: TolerantSweeper):
        self._launcher, self._sweeper = launcher, sweeper

    def __getattr__(self, name):
        return getattr(self._launcher, name)

    def launch(self, job_overrides, initial_job_idx: int):
        results, segment, start = [], [], initial_job_idx
        for i, overrides in enumerate(job_overrides):
            idx = initial_job_idx + i
            error = self._sweeper.compose_error(overrides)
            if error is None:
                if not segment:
                    start = idx
                segment.append(overrides)
                continue
            if segment:
                results.extend(self._launcher.launch(segment, initial_job_idx=start))
                segment = []
            self._sweeper.record_failed(idx, overrides, error)
        if segment:
            results.extend(self._launcher.launch(segment, initial_job_idx=start))
        return results


class TolerantSweeper(BasicSweeper):
    """Hydra's basic sweeper (``hydra/sweeper=sbrun``, the default): a value rejected at
    composition (``trainer.steps=20,abc,30``) fails its own job, like a runtime error,
    and the sweep and its summary go on."""

    def setup(self, *, hydra_context, task_function, config) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.launcher = _FilteringLauncher(self.launcher, self)

    def validate_batch_is_legal(self, batch) -> None:
        """Composition is checked job by job in the launcher (a bad job fails alone)."""

    def compose_error(self, overrides) -> str | None:
        from sbrun.errors import one_line

        try:
            self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        except Exception as e:  # noqa: BLE001 - any composition error fails this job only
            return one_line(e)
        return None

    def record_failed(self, idx: int, overrides, error: str) -> None:
        from sbrun.pipeline.rundir import write_status

        job_dir = Path(self.config.hydra.sweep.dir) / str(idx)
        (job_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        (job_dir / ".hydra" / "overrides.yaml").write_text(
            OmegaConf.to_yaml(OmegaConf.create(list(overrides))))
        write_status(job_dir, status="failed", error=error)
        log.error("job #%d (%s) rejected: %s", idx, " ".join(overrides), error)
