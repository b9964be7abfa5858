"""Variance-preserving SDE (Song et al. 2021, eq. 11) and its discrete chain, DDPM's.

In noising time ``s`` (see :mod:`sbrun.sde.noising`): ``dX = -1/2 beta(s) X ds +
sqrt(beta(s)) dW``, so ``alpha_s = exp(-1/2 int_0^s beta)`` and ``sigma_s^2 = 1 - alpha_s^2``.
Schedules:

* ``linear``: ``beta(s) = beta_min + s (beta_max - beta_min)`` (DDPM's in the limit).
* ``cosine``: ``alpha_s^2 = cos^2(theta(s)) / cos^2(theta_0)`` with ``theta`` linear from
  ``theta_0 = pi/2 c/(1+c)``, ``c = 0.008`` (Nichol & Dhariwal 2021, eq. 17), to the angle
  where ``alpha_1^2 = exp(-(beta_min + beta_max) / 2)``, the linear schedule's terminal
  signal (so the two reach the same prior; ``beta(s)`` stays finite).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sbrun.data.gaussians import Gaussian
from sbrun.errors import ConfigError
from sbrun.sde.base import expand_t
from sbrun.sde.noising import NoisingSDE, gaussian_posterior

SCHEDULES = ("linear", "cosine")
COSINE_OFFSET = 0.008  # Nichol & Dhariwal's s: keeps beta small near the data


class VPSchedule(NoisingSDE):
    """The ``alpha_s`` schedule shared by VP and sub-VP (``beta_min < beta_max``)."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, schedule: str = "linear",
                 s_min: float = 1e-3):
        super().__init__(s_min)
        if schedule not in SCHEDULES:
            raise ConfigError(f"unknown sde.schedule '{schedule}'; valid: {', '.join(SCHEDULES)}")
        if not 0 <= beta_min < beta_max:
            raise ConfigError(f"sde.beta_max must be > sde.beta_min >= 0, got beta_min={beta_min}, "
                              f"beta_max={beta_max}")
        self.beta_min, self.beta_max, self.schedule = float(beta_min), float(beta_max), schedule
        self.theta0 = 0.5 * math.pi * COSINE_OFFSET / (1 + COSINE_OFFSET)
        log_a1 = -0.25 * (self.beta_min + self.beta_max)  # log alpha_1 of the linear schedule
        self.theta1 = math.acos(math.cos(self.theta0) * math.exp(log_a1))

    def beta(self, s: Tensor) -> Tensor:
        """``beta(s) = -2 d log alpha / ds``."""
        return -2 * self.d_log_alpha(s)

    def log_alpha(self, s):
        if self.schedule == "linear":
            return -0.5 * (self.beta_min * s + 0.5 * (self.beta_max - self.beta_min) * s**2)
        theta = self.theta0 + (self.theta1 - self.theta0) * s
        return torch.log(torch.cos(theta)) - math.log(math.cos(self.theta0))

    def d_log_alpha(self, s):
        if self.schedule == "linear":
            return -0.5 * (self.beta_min + (self.beta_max - self.beta_min) * s)
        theta = self.theta0 + (self.theta1 - self.theta0) * s
        return -torch.tan(theta) * (self.theta1 - self.theta0)


class VP(VPSchedule):
    """Variance-preserving SDE; prior ``N(0, I)``.

    Args:
        beta_min, beta_max: ``beta(s)`` at the data and prior ends (linear schedule);
            the cosine schedule keeps their terminal signal ``exp(-(beta_min+beta_max)/2)``.
        schedule: ``linear`` | ``cosine``.
        s_min: noising time where generation stops.
    """

    name = "vp"

    def var(self, s):
        return -torch.expm1(2 * self.log_alpha(s))

    def d_var(self, s):
        return -2 * self.d_log_alpha(s) * torch.exp(2 * self.log_alpha(s))

    def discretize(self, steps: int) -> DiscreteVP:
        """DDPM's chain of ``steps = T`` steps (``method.chain_steps``) whose limit is this SDE.

        Linear: ``beta_i = beta((i-1)/(T-1)) / T`` (Ho et al. 2020: ``1e-4 .. 0.02`` for
        ``T = 1000``); cosine: ``alpha_bar_i = alpha_{i/T}^2`` with ``beta_i <= 0.999``
        (Nichol & Dhariwal 2021).
        """
        if steps < 2:
            raise ConfigError(f"method.chain_steps must be >= 2, got {steps}")
        if self.schedule == "linear":
            s = torch.linspace(0, 1, steps, dtype=torch.float64)
            betas = (self.beta_min + (self.beta_max - self.beta_min) * s) / steps
        else:
            s = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
            abar = torch.exp(2 * self.log_alpha(s))
            betas = (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
        if not bool((betas < 1).all()):
            raise ConfigError(f"DDPM betas reach 1 with method.chain_steps={steps}: raise it or lower "
                              "sde.beta_max")
        return DiscreteVP(betas)


@dataclass
class DiscreteVP:
    """DDPM's forward chain ``q(x_i | x_{i-1}) = N(sqrt(alpha_i) x_{i-1}, (1 - alpha_i) I)``.

    ``betas: (T,)`` float64 with ``alpha_i = 1 - beta_i``; ``alphas_bar: (T+1,)`` with
    ``alpha_bar_0 = 1`` so that ``q(x_i | x_0) = N(sqrt(alpha_bar_i) x0, (1 - alpha_bar_i) I)``.
    Index ``i`` sits at noising time ``s = i / T``.
    """

    betas: Tensor

    def __post_init__(self):
        self.alphas = 1 - self.betas
        self.alphas_bar = torch.cat([torch.ones(1, dtype=self.betas.dtype),
                                     torch.cumprod(self.alphas, 0)])

    @property
    def steps(self) -> int:
        """The chain's length ``T`` (``method.chain_steps``)."""
        return self.betas.shape[0]

    def index(self, t: Tensor | float) -> int:
        """sbrun time ``t`` (prior at 0) -> chain index ``round((1 - t) T)``."""
        return int(round((1.0 - float(t)) * self.steps))

    def _col(self, v: Tensor, x: Tensor) -> Tensor:
        return expand_t(v, x).to(x.dtype)

    def coefficients(self, i: Tensor | int, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(sqrt(alpha_bar_i), sqrt(1 - alpha_bar_i))`` shaped ``(B, 1, ..)`` against ``x``."""
        ab = self.alphas_bar.to(x.device)[torch.as_tensor(i, device=x.device)]
        return self._col(ab.sqrt(), x), self._col((1 - ab).sqrt(), x)

    def marginal(self, i: Tensor | int, x0: Tensor) -> Gaussian:
        """``q(x_i | x_0)``."""
        a, sigma = self.coefficients(i, x0)
        return Gaussian(a * x0, std=sigma)

    def posterior(self, j: int, i: int, x0: Tensor, x_i: Tensor) -> Gaussian:
        """``q(x_j | x_i, x_0)`` for ``j < i`` (for ``j = i - 1`` Ho et al.'s eq. 7)."""
        abar = self.alphas_bar.to(x0.device)
        aj, ai = abar[j], abar[i]
        return gaussian_posterior(self._col(aj.sqrt(), x0), self._col(1 - aj, x0),
                                  self._col(ai.sqrt(), x0), self._col(1 - ai, x0), x0, x_i)
