"""Atomic checkpoints: write to a temporary file, then ``os.replace`` it into place."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from sbrun.errors import ConfigError


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Save ``state`` to ``path`` atomically (a crash never leaves a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def resolve_resume(resume, run_dir: Path) -> Path | None:
    """Map the ``resume`` setting to a checkpoint file, or ``None`` for a fresh run.

    ``resume=true`` continues from ``<run_dir>/checkpoints/last.pt``; a string is a run
    directory or a checkpoint file. A missing checkpoint is a clear error.
    """
    if resume is False or resume is None or str(resume).lower() in ("false", "no", "0", ""):
        return None
    if resume is True or str(resume).lower() in ("true", "yes", "1"):
        path = run_dir / "checkpoints" / "last.pt"
    else:
        path = Path(str(resume))
        if path.is_dir():
            path = path / "checkpoints" / "last.pt"
    if not path.is_file():
        raise ConfigError(
            f"resume={resume}: no checkpoint at {path} (set hydra.run.dir to the run to "
            "continue, or resume=<run dir or .pt file>)"
        )
    return path


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`."""
    return torch.load(path, map_location=map_location, weights_only=False)
