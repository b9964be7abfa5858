"""``sbrun``: Hydra entry point -> ``pipeline.run``. Nothing else lives here.

Heavy imports (torch, POT, wandb) happen inside the task function so that
``sbrun --help`` and composition errors stay fast. Every run writes ``status.json``;
in a multirun a failed job is recorded there and the sweep goes on.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from sbrun.config import register_configs, removed_option

register_configs()


def _fail(msg: str) -> None:
    print(f"sbrun: error: {msg}", file=sys.stderr)


def _status(run_dir: str, **fields) -> None:
    try:
        Path(run_dir, "status.json").write_text(json.dumps(fields) + "\n")
    except OSError:
        pass


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def _main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from sbrun.errors import SbrunError

    hc = HydraConfig.get()
    run_dir = hc.runtime.output_dir
    multirun = hc.mode is not None and hc.mode.name == "MULTIRUN"
    sweep = {"group": Path(hc.sweep.dir).name, "tags": list(hc.overrides.task)} if multirun else {}
    t0 = time.perf_counter()
    try:
        from sbrun.pipeline.run import run

        metrics = run(cfg, run_dir, **sweep)
    except KeyboardInterrupt as e:
        _status(run_dir, status="interrupted", error=str(e))
        _fail(f"interrupted ({e}); continue with resume=true hydra.run.dir={run_dir}")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - one line for the user, traceback on request
        msg = str(e) if isinstance(e, SbrunError) else f"{type(e).__name__}: {e}"
        _status(run_dir, status="failed", error=msg, wall_seconds=time.perf_counter() - t0)
        if cfg.get("verbose", False) or not (isinstance(e, SbrunError) or multirun):
            raise
        _fail(msg)
        if multirun:  # the sweep goes on; summary.csv records the failure
            return None
        sys.exit(2)
    _status(run_dir, status="completed", wall_seconds=time.perf_counter() - t0)
    return metrics.get("w2")


def main() -> None:
    from sbrun import sweep

    removed = removed_option(sys.argv[1:])
    if removed:
        _fail(removed)
        sys.exit(2)
    _main()
    if sweep.FAILED_JOBS:
        sys.exit(1)


if __name__ == "__main__":
    main()
