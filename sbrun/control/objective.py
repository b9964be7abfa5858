"""The terminal cost ``beta`` of a control run and the exact law its optimum reaches.

* reward ``R`` with temperature ``lambda``: ``beta = -R / lambda``; the target is the base
  law tilted by ``exp(R / lambda)`` -- in closed form for a Gaussian base and the
  quadratic reward, else by importance resampling of base draws
  (:class:`~sbrun.control.targets.Tilted`).
* energy ``E`` on the Brownian reference from the origin (``X_1 ~ N(0, sigma^2 I)``):
  ``beta = E + log N(x; 0, sigma^2 I)``, so the tilted law is ``exp(-E) / Z`` whatever
  sigma (the path-integral sampler's terminal cost; Zhang & Chen 2022).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sbrun.control.energies import make_energy
from sbrun.control.rewards import QuadraticReward, make_reward
from sbrun.control.targets import Tilted, tilted_gaussian
from sbrun.data.distributions import Distribution, StandardGaussian
from sbrun.errors import ConfigError


@dataclass
class Objective:
    """``beta(x: (B, *D)) -> (B,)``, the exact target law, and what defines them."""

    beta: nn.Module
    target: Distribution
    reward: nn.Module | None = None
    energy: Distribution | None = None


class RewardCost(nn.Module):
    """``beta = -R / lambda``."""

    def __init__(self, reward: nn.Module, lam: float):
        super().__init__()
        self.reward, self.lam = reward, float(lam)

    def forward(self, x: Tensor) -> Tensor:
        return -self.reward(x) / self.lam


class EnergyCost(nn.Module):
    """``beta = E(x) + log N(x; 0, sigma^2 I)``."""

    def __init__(self, energy: Distribution, sigma: float):
        super().__init__()
        self.energy, self.base = energy, StandardGaussian(energy.shape, std=sigma)

    def forward(self, x: Tensor) -> Tensor:
        return self.energy.energy(x) + self.base.log_prob(x)


def reward_objective(name: str, lam: float, base_law: Distribution, shape: tuple[int, ...],
                     center=None, reward_class=None, classifier_path=None,
                     pool: int = 30) -> Objective:
    """``beta = -R / lambda`` and the base law ``base_law`` tilted by ``exp(R / lambda)``."""
    reward = make_reward(name, shape, center, reward_class, classifier_path)
    cost = RewardCost(reward, lam)
    label = f"{base_law.name} x exp({name} / {lam:g})"
    if isinstance(reward, QuadraticReward) and isinstance(base_law, StandardGaussian):
        d = reward.center.numel()
        cov = torch.eye(d, dtype=torch.float64) * base_law.std**2
        target = tilted_gaussian(torch.zeros(d), cov, reward.center, lam, name=label)
    else:
        target = Tilted(base_law, lambda x: reward(x) / lam, pool=pool, name=label)
    return Objective(cost, target, reward=reward)


def energy_objective(name: str, sigma: float, shape: tuple[int, ...]) -> Objective:
    """``beta = E + log p_base`` on the reference from the origin (``X_1 ~ N(0, sigma^2 I)``:
    ``sigma`` is the base's *terminal* std); the target is ``exp(-E)``."""
    energy = make_energy(name)
    if tuple(shape) != tuple(energy.shape):
        raise ConfigError(f"method.energy={name} lives in {energy.shape}, the data has shape {shape}")
    return Objective(EnergyCost(energy, sigma), energy, energy=energy)
