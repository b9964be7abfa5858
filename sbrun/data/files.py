"""User point clouds from ``.npz`` files, split into seeded train / test sets.

A file holds an array (default key ``x``) of shape ``(n, d)`` or ``(n, *D)``: one row
per point. The split is a permutation ``perm = randperm(n)`` drawn from
``Generator().manual_seed(seed)``: the first ``n_test = max(1, round(test_fraction * n))``
rows of ``perm`` form the test set, the rest the training set. Paired files share the
permutation, so row ``i`` of the source stays with row ``i`` of the target.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np
import torch
from torch import Tensor

from sbrun.data.distributions import Empirical
from sbrun.errors import ConfigError, DataError


def _read_array(path: str, key: str) -> np.ndarray:
    """The array ``key`` of an ``.npz`` (or the array of an ``.npy``) at ``path``."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz/.npy file ({e})") from None
    if isinstance(data, np.ndarray):
        return data
    with data:
        if key not in data.files:
            have = ", ".join(data.files) or "none"
            raise DataError(f"{path}: no array '{key}' (arrays in the file: {have})")
        try:
            return data[key]
        except ValueError as e:
            raise DataError(f"{path}: cannot read '{key}' ({e})") from None


def _check_array(arr: np.ndarray, path: str, key: str) -> Tensor:
    """Validate ``arr`` (numeric, ``>= 2``-D, non-empty, finite) -> float32 tensor."""
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{path}: '{key}' has non-numeric dtype {arr.dtype}")
    if arr.ndim < 2:
        raise DataError(
            f"{path}: '{key}' has shape {arr.shape}; expected (n, d) with one row per point"
        )
    if arr.size == 0:
        raise DataError(f"{path}: '{key}' is empty (shape {arr.shape})")
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).reshape(x.shape[0], -1).any(1).sum())
        raise DataError(f"{path}: '{key}' has NaN/inf values in {bad} of {x.shape[0]} rows")
    return x


def load_npz_array(path: str, key: str = "x") -> Tensor:
    """The validated array ``key`` of a file, ``(n, *D)`` float32 (no train/test split)."""
    return _check_array(_read_array(str(path), key), str(path), key)


def _split_perm(n: int, test_fraction: float, seed: int, path: str) -> tuple[Tensor, Tensor]:
    """Seeded ``(train_idx, test_idx)`` for ``n`` rows."""
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if n < 2:
        raise DataError(f"{path}: {n} row(s); need at least 2 to split train/test")
    n_test = min(max(1, round(test_fraction * n)), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return perm[n_test:], perm[:n_test]


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def load_npz(
    path: str,
    key: str = "x",
    test_fraction: float = 0.2,
    seed: int = 0,
    name: str | None = None,
) -> Empirical:
    """Load ``path[key]`` (``(n, d)`` or ``(n, *D)``) as an :class:`Empirical`.

    Raises ``DataError`` (one line) when the file is missing, unreadable, lacks ``key``,
    or the array is 1-D, empty, non-numeric or non-finite.
    """
    x = _check_array(_read_array(path, key), path, key)
    train, test = _split_perm(x.shape[0], test_fraction, seed, path)
    return Empirical(x[train], x[test], name=name or _stem(path))


def load_paired_npz(
    source_path: str,
    target_path: str,
    key: str = "x",
    test_fraction: float = 0.2,
    seed: int = 0,
    name: str | None = None,
) -> tuple[Empirical, Empirical]:
    """Load paired source (t = 0) and target (t = 1) clouds with one shared split.

    Row ``i`` of the source file goes with row ``i`` of the target file, before and after
    the split. ``DataError`` when the row counts differ.
    """
    xs = _check_array(_read_array(source_path, key), source_path, key)
    xt = _check_array(_read_array(target_path, key), target_path, key)
    if xs.shape[0] != xt.shape[0]:
        raise DataError(
            f"paired data: {source_path} has {xs.shape[0]} rows but {target_path} has "
            f"{xt.shape[0]}"
        )
    train, test = _split_perm(xs.shape[0], test_fraction, seed, source_path)
    base = name or f"{_stem(source_path)}2{_stem(target_path)}"
    return (
        Empirical(xs[train], xs[test], name=f"{base}/source"),
        Empirical(xt[train], xt[test], name=f"{base}/target"),
    )
