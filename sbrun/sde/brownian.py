"""Brownian reference ``dX = sigma dW`` (seed 001: "movimiento browniano con difusividad sigma")."""

from __future__ import annotations

import torch
from torch import Tensor

from sbrun.errors import check_positive
from sbrun.sde.base import Gaussian, ReferenceSDE, expand_t


class Brownian(ReferenceSDE):
    """``dX_t = sigma dW_t``: marginal ``N(x0, sigma^2 t)``, bridge ``N((1-t)x0 + t x1, sigma^2 t(1-t))``.

    Args:
        sigma: diffusion coefficient (a *sigma*, not an epsilon): the reference has
            variance ``sigma^2 t``; the entropic OT regularisation is ``eps = sigma^2``.
    """

    name = "brownian"

    def __init__(self, sigma: float = 1.0):
        self.sigma = float(check_positive("sde.sigma", sigma))

    def drift(self, t: Tensor, x: Tensor) -> Tensor:
        return torch.zeros_like(x)

    def diffusion(self, t: Tensor) -> Tensor:
        return torch.full_like(torch.as_tensor(t, dtype=torch.float32), self.sigma)

    def marginal(self, t: Tensor, x0: Tensor) -> Gaussian:
        tt = expand_t(t, x0)
        return Gaussian(x0, self.sigma * tt.sqrt())

    def bridge(self, t: Tensor, x0: Tensor, x1: Tensor) -> Gaussian:
        tt = expand_t(t, x0)
        return Gaussian((1 - tt) * x0 + tt * x1, self.sigma * (tt * (1 - tt)).sqrt())

    def bridge_drift(self, t: Tensor, x: Tensor, x1: Tensor) -> Tensor:
        tt = expand_t(t, x)
        return (x1 - x) / (1 - tt).clamp_min(1e-5)
