"""``sbrun``: Hydra entry point -> ``pipeline.run``. Nothing else lives here.

Heavy imports (torch, POT, wandb) happen inside the task function so that
``sbrun --help`` and composition errors stay fast.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from sbrun.config import register_configs

register_configs()


def _fail(msg: str) -> None:
    print(f"sbrun: error: {msg}", file=sys.stderr)


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def _main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from sbrun.errors import SbrunError

    hc = HydraConfig.get()
    run_dir = hc.runtime.output_dir
    multirun = str(hc.mode) == "RunMode.MULTIRUN"
    try:
        from sbrun.pipeline.run import run

        metrics = run(cfg, run_dir)
    except SbrunError as e:
        if cfg.get("verbose", False):
            raise
        _fail(str(e))
        if multirun:  # the sweep goes on; the summary records the failure
            raise
        sys.exit(2)
    except KeyboardInterrupt as e:
        _fail(f"interrupted ({e}); continue with resume=true hydra.run.dir={run_dir}")
        sys.exit(130)
    return metrics.get("w2")


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
