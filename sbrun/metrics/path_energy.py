"""Path energy of a learned flow (Tong et al. 2024, Sec. 5.1): how far its paths are from
the straight optimal-transport (Benamou–Brenier) paths.

``PE = E int_0^1 |v(t, x_t)|^2 dt`` along the ODE paths of held-out source draws (Euler on
``steps`` uniform steps), ``ot_cost = W2^2`` between the held-out source and target draws
(exact), and ``NPE = |PE - W2^2| / W2^2``: 0 for the straight OT paths, which have the
least kinetic energy of any transport between the two laws.
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def euler_energy(drift, x: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """Euler on ``steps`` uniform steps of ``[0, 1]`` with the kinetic energy along the way.

    Returns ``(x_1: (B, *D), energy: (B,))``, ``energy = sum_k h |v(t_k, x_k)|^2``.
    """
    h = 1.0 / steps
    energy = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for k in range(steps):
        t = torch.full((x.shape[0],), k * h, dtype=x.dtype, device=x.device)
        v = drift(t, x)
        energy += h * v.reshape(v.shape[0], -1).double().pow(2).sum(1)
        x = x + h * v
    return x, energy


class PathEnergy:
    """``path_energy``, ``ot_cost`` and ``normalized_path_energy`` of a drift on at most
    ``points`` source draws (images: at most 64, ``steps`` network calls each). The exact
    ``W2^2`` of the same held-out clouds is solved once and kept."""

    def __init__(self, steps: int, points: int):
        self.steps, self.points = int(steps), int(points)
        self._cache: dict = {}

    def ot_cost(self, x0: Tensor, x1: Tensor) -> float:
        """``W2^2`` between the point clouds (exact, at most 2000 points each)."""
        from sbrun.metrics.distances import w2

        key = (x0.data_ptr(), x1.data_ptr(), x0.shape[0], x1.shape[0])
        if key not in self._cache:
            self._cache = {key: w2(x0, x1, max_points=2000,
                                   generator=torch.Generator().manual_seed(0)) ** 2}
        return self._cache[key]

    def __call__(self, drift, x0: Tensor, target: Tensor) -> dict[str, float]:
        if not self.steps:
            return {}
        n = self.points if x0.dim() <= 2 else min(self.points, 64)
        x0, target = x0[:n], target[:n]
        _, energy = euler_energy(drift, x0, self.steps)
        pe, cost = float(energy.mean()), self.ot_cost(x0, target)
        return {"path_energy": pe, "ot_cost": cost,
                "normalized_path_energy": abs(pe - cost) / max(cost, 1e-12)}
