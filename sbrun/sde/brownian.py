"""Brownian reference ``dX = sigma dW`` (seed 001: "movimiento browniano con difusividad sigma")."""

from __future__ import annotations

import torch
from torch import Tensor

from sbrun.data.gaussians import Gaussian
from sbrun.errors import check_positive
from sbrun.sde.base import ReferenceSDE, expand_t


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
        return Gaussian(x0, std=self.sigma * tt.sqrt())

    def bridge(self, t: Tensor, x0: Tensor, x1: Tensor) -> Gaussian:
        tt = expand_t(t, x0)
        return Gaussian((1 - tt) * x0 + tt * x1, std=self.sigma * (tt * (1 - tt)).sqrt())

    def bridge_drift(self, t: Tensor, x: Tensor, x1: Tensor) -> Tensor:
        tt = expand_t(t, x)
        return (x1 - x) / (1 - tt).clamp_min(1e-5)

    def transition(self, r0: Tensor, r1: Tensor) -> tuple[Tensor, Tensor]:
        """``X_{r1} | X_{r0} = x ~ N(x, sigma^2 (r1 - r0) I)`` (either end may be the start)."""
        r0, r1 = (torch.as_tensor(r, dtype=torch.float64) for r in (r0, r1))
        return torch.ones_like(r1 - r0), self.sigma * (r1 - r0).clamp_min(0).sqrt()

    def as_noising(self):
        """``dX = sigma dW`` as a noising process (prior ``N(0, sigma^2 I)``)."""
        from sbrun.sde.noising import BrownianNoising

        return BrownianNoising(self.sigma)

    def bridge_path(self, x0: Tensor, x1: Tensor, grid: Tensor,
                    generator: torch.Generator | None = None) -> Tensor:
        """Exact draws of the bridge pinned at ``(x0, x1)`` on ``grid``: ``(B, n_times, *D)``.

        Sequential Gaussian transitions: given ``X_s = x``, ``X_t ~ N(x + (t-s)/(1-s)
        (x1 - x), sigma^2 (t-s)(1-t)/(1-s))`` (no discretisation error).
        """
        ts = grid.to(x0.dtype)
        x, out = x0, [x0]
        for s, t in zip(ts[:-1], ts[1:]):
            if float(t) >= 1.0:
                x = x1
            else:
                frac = (t - s) / (1 - s)
                std = self.sigma * torch.sqrt((t - s) * (1 - t) / (1 - s))
                z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
                x = x + frac * (x1 - x) + std * z
            out.append(x)
        return torch.stack(out, 1)
