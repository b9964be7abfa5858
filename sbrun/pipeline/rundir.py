"""The run directory: who may write into it, and the config it records.

A directory that holds a run (a checkpoint or metrics) is never reused without
``resume=true``; two processes never write into one directory at the same time (an
advisory ``flock`` on ``.sbrun.lock``, released by the kernel even when a process is
killed). ``.hydra/`` is written by sbrun itself once every option has been checked
(``hydra.output_subdir`` is null), so a rejected command leaves a finished run intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sbrun.errors import ConfigError

RUN_MARKERS = ("checkpoints/last.pt", "metrics.jsonl", "metrics.json", "samples.npz")
LOCK = ".sbrun.lock"


def has_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds (part of) a run: a checkpoint, metrics or samples."""
    return any((Path(run_dir) / m).exists() for m in RUN_MARKERS)


def resumes_here(resume, run_dir: Path) -> bool:
    """``resume`` continues the run in ``run_dir`` (``true``, or a path inside it)."""
    if resume is True or str(resume).lower() in ("true", "yes", "1"):
        return True
    if resume is False or resume is None or str(resume).lower() in ("false", "no", "0", ""):
        return False
    target, here = Path(str(resume)).resolve(), Path(run_dir).resolve()
    return target == here or here in target.parents


def claim(run_dir: str | Path, resume):
    """Lock ``run_dir`` for this process and refuse it when it holds a run that ``resume``
    does not continue. Returns the open lock file (keep it open for the run)."""
    import fcntl

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    f = open(run_dir / LOCK, "a+")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        pid = f.read().strip() or "?"
        f.close()
        raise ConfigError(f"{run_dir} is in use by another sbrun process (pid {pid}); wait for "
                          "it to end, or start this run in a fresh hydra.run.dir") from None
    if has_run(run_dir) and not resumes_here(resume, run_dir):
        f.close()
        raise ConfigError(f"{run_dir} already holds a run: continue it with resume=true, or "
                          "start a new one in a fresh directory (hydra.run.dir=<new dir>)")
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def write_config(run_dir: str | Path, cfg, hydra_cfg=None, overrides=None) -> None:
    """``.hydra/config.yaml`` (and ``hydra.yaml``, ``overrides.yaml``) as Hydra writes them."""
    from omegaconf import OmegaConf

    out = Path(run_dir) / ".hydra"
    out.mkdir(parents=True, exist_ok=True)
    items = {"config.yaml": cfg, "hydra.yaml": hydra_cfg, "overrides.yaml": overrides}
    for name, node in items.items():
        if node is not None:
            tmp = out / f"{name}.tmp"
            tmp.write_text(OmegaConf.to_yaml(node))
            os.replace(tmp, out / name)


def write_status(run_dir: str | Path, **fields) -> None:
    """``status.json``: completed | failed | interrupted, with the error and wall time."""
    try:
        Path(run_dir, "status.json").write_text(json.dumps(fields) + "\n")
    except OSError:
        pass
