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


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf.errors import OmegaConfBaseException

    from sbrun.errors import SbrunError, one_line
    from sbrun.pipeline import rundir

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode is not None and hc.mode.name == "MULTIRUN"
    sweep = {"group": Path(hc.sweep.dir).name, "tags": list(hc.overrides.task)} if multirun else {}
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # a launcher's own handler stays
        signal.signal(signal.SIGTERM, _sigterm)
    replica = os.environ.get("RANK", "0") != "0"  # torchrun: rank 0 owns the run directory
    fresh = not rundir.has_run(run_dir)  # nothing to damage: a failure may be recorded here
    written = {"config": False}

    def write_config() -> None:
        rundir.write_config(run_dir, cfg, HydraConfig.instance().cfg, hc.overrides.task)
        written["config"] = True

    def ours() -> bool:  # status.json may be written: our run started, or a fresh dir we hold
        return not replica and (written["config"] or (fresh and lock is not None))

    t0 = time.perf_counter()
    lock = None
    try:
        if not replica:
            lock = rundir.claim(run_dir, cfg.resume)
            print(f"sbrun: run directory {run_dir}", flush=True)
        from sbrun.pipeline.run import run

        metrics = run(cfg, run_dir, on_ready=write_config, **sweep)
        if not replica:  # written while the lock is held
            rundir.write_status(run_dir, status="completed", wall_seconds=time.perf_counter() - t0)
    except KeyboardInterrupt as e:
        if ours():
            rundir.write_status(run_dir, status="interrupted", error=str(e),
                                wall_seconds=time.perf_counter() - t0)
        _fail(f"interrupted ({e}); continue with resume=true hydra.run.dir={run_dir}")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - one line for the user, traceback on request
        user_error = isinstance(e, (SbrunError, OSError, OmegaConfBaseException))
        msg = one_line(e) if user_error else f"{type(e).__name__}: {e}"
        if ours():
            if not written["config"]:
                write_config()  # a failed fresh job: its config next to its status
            rundir.write_status(run_dir, status="failed", error=msg,
                                wall_seconds=time.perf_counter() - t0)
        if cfg.get("verbose", False) or not (user_error or multirun):
            raise
        _fail(msg)
        if multirun:  # the sweep goes on; summary.csv records the failure
            return None
        sys.exit(EXIT_ERROR)
    finally:
        if lock is not None:
            lock.close()
    if replica:
        return None
    print(f"sbrun: done; results in {run_dir}", flush=True)
    for d in _wandb_offline_dirs(run_dir)[-1:]:
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
