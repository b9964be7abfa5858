"""Wasserstein barycenters of point clouds (POT's free-support solver).

``argmin_Y sum_k w_k W2^2(Y, X_k)`` over a cloud ``Y`` of ``n_support`` points
(Cuturi & Doucet 2014), the "barycentric interpolation" of seed 000: with weights on the
simplex it interpolates between K > 2 shapes, and with K = 2 it is McCann's
displacement interpolation at ``t = w_1``.
"""

from __future__ import annotations

import numpy as np
import ot
import torch
from torch import Tensor

from sbrun.errors import ConfigError


def free_support_barycenter(clouds: list[Tensor], weights, n_support: int = 300,
                            max_iter: int = 50, seed: int = 0) -> Tensor:
    """Barycenter support ``(n_support, d)`` of ``clouds`` (each ``(n_k, d)``, uniform).

    Args:
        weights: ``(K,)`` non-negative, summing to 1 (a point of the simplex).
    """
    w = np.asarray(weights, dtype=np.float64)
    if len(clouds) != len(w) or (w < 0).any() or abs(w.sum() - 1) > 1e-6:
        raise ConfigError(f"barycenter weights must be {len(clouds)} non-negative numbers "
                          f"summing to 1, got {list(w)}")
    locs = [c.detach().cpu().double().numpy() for c in clouds]
    masses = [np.full(len(c), 1 / len(c)) for c in locs]
    rng = np.random.default_rng(seed)
    init = locs[int(np.argmax(w))][rng.choice(len(locs[int(np.argmax(w))]), n_support)]
    y = ot.lp.free_support_barycenter(locs, masses, init, weights=w, numItermax=max_iter)
    return torch.as_tensor(y, dtype=torch.float32)


def simplex_grid(k: int = 3, n: int = 4) -> list[np.ndarray]:
    """Weights on a triangular grid of the 3-simplex with ``n`` steps per edge."""
    if k != 3:
        raise ConfigError("the barycentric interpolation grid is drawn for 3 shapes")
    return [np.array([i, j, n - i - j], dtype=np.float64) / n
            for i in range(n, -1, -1) for j in range(n - i, -1, -1)]
