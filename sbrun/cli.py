"""``sbrun``: Hydra entry point -> ``pipeline.run``. Nothing else lives here.

Heavy imports (torch, POT, wandb) happen inside the task function so that
``sbrun --help`` and composition errors stay fast. Every error a user can cause (a bad
option, a Hydra composition error, a run directory in use, an unreadable file) is one
line on stderr and exit code 2 (``verbose=true`` shows the traceback). The run
directory is claimed (locked, refused when it holds a run and ``resume`` is not set),
every option is checked, and only then is ``.hydra/`` written. Every run writes
``status.json``; in a multirun a failed job is recorded there and the sweep goes on.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from sbrun.config import CONF_DIR, register_configs, removed_option

register_configs()

EXIT_ERROR = 2  # every user error; a bug (traceback) exits 1


def _fail(msg: str) -> None:
    print(f"sbrun: error: {msg}", file=sys.stderr)


def _sigterm(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


def _wandb_offline_dirs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


class _Job:
    """One job's run directory: its lock, its ``.hydra/`` config and its ``status.json``.
    Under torchrun only rank 0 owns the directory (``replica`` is any other rank)."""

    def __init__(self, cfg: DictConfig, hc) -> None:
        from sbrun.pipeline import rundir

        self.rundir, self.cfg, self.hc = rundir, cfg, hc
        self.run_dir = Path(hc.runtime.output_dir)
        self.replica = os.environ.get("RANK", "0") != "0"
        self.fresh = not rundir.has_run(self.run_dir)  # nothing to damage: a failure may be recorded
        self.config_written = False
        self.lock = None
        self.t0 = time.perf_counter()

    def claim(self) -> None:
        if not self.replica:
            self.lock = self.rundir.claim(self.run_dir, self.cfg.resume)
            print(f"sbrun: run directory {self.run_dir}", flush=True)

    def write_config(self) -> None:
        from hydra.core.hydra_config import HydraConfig

        self.rundir.write_config(self.run_dir, self.cfg, HydraConfig.instance().cfg,
                                 self.hc.overrides.task)
        self.config_written = True

    def ours(self) -> bool:
        """May ``status.json`` be written: our run started, or a fresh directory we hold."""
        return not self.replica and (self.config_written or (self.fresh and self.lock is not None))

    def status(self, status: str, **fields) -> None:
        self.rundir.write_status(self.run_dir, status=status,
                                 wall_seconds=time.perf_counter() - self.t0, **fields)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.close()


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf.errors import OmegaConfBaseException

    from sbrun.errors import SbrunError, one_line

    hc = HydraConfig.get()
    multirun = hc.mode is not None and hc.mode.name == "MULTIRUN"
    sweep = {"group": Path(hc.sweep.dir).name, "tags": list(hc.overrides.task)} if multirun else {}
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # a launcher's own handler stays
        signal.signal(signal.SIGTERM, _sigterm)
    job = _Job(cfg, hc)
    try:
        job.claim()
        from sbrun.pipeline.run import run

        metrics = run(cfg, job.run_dir, on_ready=job.write_config, **sweep)
        if not job.replica:  # written while the lock is held
            job.status("completed")
    except KeyboardInterrupt as e:
        if job.ours():
            job.status("interrupted", error=str(e))
        _fail(f"interrupted ({e}); continue with resume=true hydra.run.dir={job.run_dir}")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - one line for the user, traceback on request
        user_error = isinstance(e, (SbrunError, OSError, OmegaConfBaseException))
        msg = one_line(e) if user_error else f"{type(e).__name__}: {e}"
        if job.ours():
            if not job.config_written:
                job.write_config()  # a failed fresh job: its config next to its status
            job.status("failed", error=msg)
        if cfg.get("verbose", False) or not (user_error or multirun):
            raise
        _fail(msg)
        if multirun:  # the sweep goes on; summary.csv records the failure
            return None
        sys.exit(EXIT_ERROR)
    finally:
        job.release()
    if job.replica:
        return None
    print(f"sbrun: done; results in {job.run_dir}", flush=True)
    for d in _wandb_offline_dirs(job.run_dir)[-1:]:
        print(f"sbrun: W&B ran offline; upload with: wandb sync {d}", flush=True)
    return metrics.get("w2")


def _verbose(argv: list[str]) -> bool:
    for a in argv:
        key, _, value = a.partition("=")
        if key.lstrip("+~") == "verbose" and value.lower() in ("true", "1", "yes"):
            return True
    return False


def main() -> None:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from sbrun import sweep
    from sbrun.errors import SbrunError, one_line

    removed = removed_option(sys.argv[1:])
    if removed:
        _fail(removed)
        sys.exit(EXIT_ERROR)
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises: its errors become one line here
    try:
        _main()
    except (HydraException, OmegaConfBaseException, SbrunError, OSError) as e:
        if _verbose(sys.argv[1:]):
            raise
        _fail(one_line(e))
        sys.exit(EXIT_ERROR)
    if sweep.FAILED_JOBS:
        sys.exit(1)


if __name__ == "__main__":
    main()
