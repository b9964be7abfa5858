"""Distances between samples and between Gaussians.

* :func:`w2` -- exact 2-Wasserstein distance between two empirical measures (POT's
  network simplex, ``ot.emd2``), on at most ``max_points`` points of each;
* :func:`w2_floor` -- ``w2`` between two independent samples of the *same* law: the
  finite-sample noise level that even a perfect model cannot beat;
* :func:`bures_sq`, :func:`w2_gaussian` -- the closed form between Gaussians.
"""

from __future__ import annotations

import math

import numpy as np
import ot
import torch
from torch import Tensor

from sbrun.couplings.base import half_sq_dists
from sbrun.data.gaussians import sqrtm_psd
from sbrun.errors import ConfigError


def _subsample(x: Tensor, k: int | None, generator: torch.Generator | None) -> Tensor:
    if k is None or x.shape[0] <= k:
        return x
    idx = torch.randperm(x.shape[0], generator=generator)[:k]
    return x[idx.to(x.device)]


def w2(x: Tensor, y: Tensor, max_points: int | None = 2000,
       generator: torch.Generator | None = None) -> float:
    """Exact ``W2`` between the uniform empirical measures of ``x`` and ``y``.

    ``W2^2 = min_{P in U(1/n, 1/m)} sum_ij P_ij |x_i - y_j|^2`` (no 1/2), solved by
    ``ot.emd2``. Larger sets are subsampled without replacement to ``max_points``
    (``None``: all points; the solver is roughly cubic in the number of points).

    Args:
        x: ``(n, *D)``; y: ``(m, *D)`` with the same trailing shape.
        generator: drives the subsampling (reproducible scores).

    Returns:
        ``W2`` (not squared) as a float.
    """
    if x.shape[0] == 0 or y.shape[0] == 0:
        raise ConfigError("w2 needs non-empty samples")
    x, y = _subsample(x, max_points, generator), _subsample(y, max_points, generator)
    M = (2.0 * half_sq_dists(x, y.to(x.device))).cpu().numpy()
    a = np.full(M.shape[0], 1.0 / M.shape[0])
    b = np.full(M.shape[1], 1.0 / M.shape[1])
    val = float(ot.emd2(a, b, M, numItermax=10_000_000))
    return math.sqrt(max(val, 0.0))


def w2_floor(y_a: Tensor, y_b: Tensor, max_points: int | None = 2000,
             generator: torch.Generator | None = None) -> float:
    """``w2(y_a, y_b)`` for two independent samples of the target law.

    With ``n`` points per side the empirical ``W2`` between a perfect model's samples and
    the reference samples is of this size (it decays like ``n^{-1/d}`` in dimension
    ``d > 4``), so a model score should be read relative to it, never below it.
    """
    return w2(y_a, y_b, max_points=max_points, generator=generator)


def bures_sq(S0: Tensor, S1: Tensor) -> Tensor:
    """Squared Bures distance ``tr S0 + tr S1 - 2 tr (S0^{1/2} S1 S0^{1/2})^{1/2}``.

    Args:
        S0, S1: PSD ``(..., d, d)`` (broadcast).

    Returns:
        ``(...)`` float64, clipped at 0.
    """
    S0, S1 = S0.double(), S1.double()
    R = sqrtm_psd(S0)
    w = torch.linalg.eigvalsh(R @ S1 @ R)
    tr = S0.diagonal(dim1=-2, dim2=-1).sum(-1) + S1.diagonal(dim1=-2, dim2=-1).sum(-1)
    return (tr - 2.0 * w.clamp_min(0.0).sqrt().sum(-1)).clamp_min(0.0)


def w2_gaussian(m0: Tensor, S0: Tensor, m1: Tensor, S1: Tensor) -> float:
    """``W2(N(m0, S0), N(m1, S1))`` in closed form (Dowson & Landau 1982):
    ``W2^2 = |m0 - m1|^2 + bures_sq(S0, S1)``."""
    d2 = (torch.as_tensor(m0).double() - torch.as_tensor(m1).double()).pow(2).sum()
    return math.sqrt(float(d2 + bures_sq(torch.as_tensor(S0), torch.as_tensor(S1))))
