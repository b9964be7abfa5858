"""Unnormalised 2D densities ``p(x) ∝ exp(-E(x))`` for data-free sampling, each with an
exact sampler (the held-out draws the runs are scored against by W2).

* ``mixture8`` -- 8 equal Gaussians (std 0.3) on a circle of radius 3.
* ``ring`` -- ``E = (|x| - 3)^2 / (2 * 0.25^2)``: a thin ring of radius 3.
* ``funnel`` -- Neal's funnel in 2D: ``v ~ N(0, 1.5^2)``, ``x | v ~ N(0, e^v)``
  (a scale ``1.5`` on ``v`` instead of Neal's 3, so that a 2000-point W2 is stable).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sbrun.data.distributions import Distribution
from sbrun.data.gaussians import GaussianMixture
from sbrun.errors import ConfigError

ENERGIES = ("mixture8", "ring", "funnel")


class Mixture8(GaussianMixture):
    """8 equal isotropic Gaussians on a circle; ``energy = -log p`` (normalised)."""

    def __init__(self, radius: float = 3.0, std: float = 0.3):
        ang = torch.arange(8, dtype=torch.float64) * math.pi / 4
        means = radius * torch.stack([ang.cos(), ang.sin()], 1)
        super().__init__(torch.ones(8), means, std, name="mixture8")

    def energy(self, x: Tensor) -> Tensor:
        return -self.log_prob(x)


class Ring(Distribution):
    """``p(x) ∝ exp(-(|x| - R)^2 / (2 s^2))``: angle uniform, radius with density
    ``∝ r exp(-(r - R)^2 / (2 s^2))`` (sampled exactly by rejection from ``N(R, s^2)``)."""

    shape = (2,)
    name = "ring"

    def __init__(self, radius: float = 3.0, std: float = 0.25):
        self.radius, self.std = float(radius), float(std)

    def energy(self, x: Tensor) -> Tensor:
        return (x.norm(dim=1) - self.radius).pow(2) / (2 * self.std**2)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        r_max = self.radius + 8 * self.std
        out = torch.empty(0, dtype=torch.float64)
        while out.numel() < n:
            r = self.radius + self.std * torch.randn(2 * n, generator=generator, dtype=torch.float64)
            u = torch.rand(2 * n, generator=generator, dtype=torch.float64)
            out = torch.cat([out, r[(r > 0) & (u * r_max < r)]])
        theta = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
        r = out[:n]
        return torch.stack([r * theta.cos(), r * theta.sin()], 1).float()


class Funnel(Distribution):
    """Neal's funnel in 2D: ``x = (v, y)``, ``v ~ N(0, a^2)``, ``y | v ~ N(0, e^v)``."""

    shape = (2,)
    name = "funnel"

    def __init__(self, scale: float = 1.5):
        self.scale = float(scale)

    def energy(self, x: Tensor) -> Tensor:
        v, y = x[:, 0], x[:, 1]
        return v.pow(2) / (2 * self.scale**2) + 0.5 * v + y.pow(2) * torch.exp(-v) / 2

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        v = self.scale * torch.randn(n, generator=generator, dtype=torch.float64)
        y = torch.exp(v / 2) * torch.randn(n, generator=generator, dtype=torch.float64)
        return torch.stack([v, y], 1).float()


def make_energy(name: str) -> Distribution:
    """The energy ``name`` (a distribution with ``energy(x)`` and exact ``sample``)."""
    table = {"mixture8": Mixture8, "ring": Ring, "funnel": Funnel}
    if name not in table:
        raise ConfigError(f"unknown method.energy '{name}'; valid: {', '.join(ENERGIES)}")
    return table[name]()
