"""Variance-exploding SDE (Song et al. 2021, eq. 9; SMLD's limit), in noising time ``s``.

``dX = sqrt(d sigma^2(s)/ds) dW`` with ``sigma(s) = sigma_min (sigma_max / sigma_min)^s``.
The marginal is exact: ``X_s | x0 ~ N(x0, (sigma(s)^2 - sigma_min^2) I)`` (zero noise at the
data); the prior is ``N(0, sigma_max^2 I)``, which neglects the data's own spread, so
``sigma_max`` should be about the largest distance between data points (Song & Ermon 2020).
"""

from __future__ import annotations

import math

import torch

from sbrun.errors import ConfigError
from sbrun.sde.noising import NoisingSDE


class VE(NoisingSDE):
    """Variance-exploding SDE.

    Args:
        sigma_min, sigma_max: noise std (sigmas, not variances) at ``s = 0`` and ``s = 1``.
        s_min: noising time where generation stops.
    """

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 5.0, s_min: float = 1e-5):
        super().__init__(s_min)
        if not 0 < sigma_min < sigma_max:
            raise ConfigError(f"sde.sigma_max must be > sde.sigma_min > 0, got "
                              f"sigma_min={sigma_min}, sigma_max={sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.log_ratio = math.log(self.sigma_max / self.sigma_min)
        self.prior_std = self.sigma_max

    def log_alpha(self, s):
        return torch.zeros_like(s)

    def d_log_alpha(self, s):
        return torch.zeros_like(s)

    def var(self, s):
        return self.sigma_min**2 * torch.expm1(2 * self.log_ratio * s)

    def d_var(self, s):
        return 2 * self.log_ratio * self.sigma_min**2 * torch.exp(2 * self.log_ratio * s)
