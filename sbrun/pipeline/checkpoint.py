"""Atomic checkpoints: write to a temporary file, then ``os.replace`` it into place.

Checkpoints hold tensors, numbers, strings and plain containers only, and are read with
``torch.load(weights_only=True)``: a checkpoint handed over by someone else can carry
wrong numbers, never code (a file that needs unpickling of anything else is refused).

``checkpoints/last.pt`` is the last checkpoint whose weights gave a finite loss: the
trainer keeps the one before it as ``prev.pt`` until the next step's loss has been
checked, and puts it back when that loss is not finite.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from sbrun.errors import ConfigError

LAST, PREV = "last.pt", "prev.pt"


def plain(v):
    """Numbers from numpy/torch as Python floats/ints (checkpoints hold plain data only)."""
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v.item() if hasattr(v, "item") and getattr(v, "ndim", 0) == 0 else v


def save_checkpoint(state: dict, path: str | Path, keep_previous: bool = False) -> Path:
    """Save ``state`` to ``path`` atomically (a crash never leaves a half-written file).

    ``keep_previous``: move the file already at ``path`` to ``prev.pt`` next to it first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    torch.save(state, tmp)
    if keep_previous and path.exists():  # a second name for it first: last.pt never goes missing
        prev_tmp = path.with_name(f"{PREV}.{os.getpid()}.tmp")
        prev_tmp.unlink(missing_ok=True)
        try:
            os.link(path, prev_tmp)
        except OSError:  # a file system without hard links
            shutil.copyfile(path, prev_tmp)
        os.replace(prev_tmp, path.with_name(PREV))
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
        path = run_dir / "checkpoints" / LAST
    else:
        path = Path(str(resume))
        if path.is_dir():
            path = path / "checkpoints" / LAST
    if not path.is_file():
        raise ConfigError(
            f"resume={resume}: no checkpoint at {path} (set hydra.run.dir to the run to "
            "continue, or resume=<run dir or .pt file>)"
        )
    return path


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors and plain data only).

    A truncated, corrupt or code-carrying file is a one-line ``ConfigError``.
    """
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"no checkpoint at {path}") from None
    except Exception as e:  # noqa: BLE001 - UnpicklingError, RuntimeError (zip), EOFError, ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"checkpoint {path} cannot be read as weights only ({type(e).__name__}: "
                          f"{first[:200]}); it is corrupt or was not written by sbrun") from None
    if not isinstance(state, dict) or "ema" not in state:
        raise ConfigError(f"checkpoint {path} is not an sbrun checkpoint (no 'ema' weights)")
    return state


def load_weights(module: torch.nn.Module, weights: dict, path: str | Path) -> None:
    """``module.load_state_dict`` with a one-line error when the shapes or names differ."""
    try:
        module.load_state_dict(weights)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0] if lines else ""
        raise ConfigError(f"checkpoint {path} does not fit this model ({detail[:200]}); the "
                          "model options differ from the run that wrote it") from None
