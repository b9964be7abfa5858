"""Gaussian-mixture problems in ``d`` dimensions with an exact target log-density.

``gmm_highdim``: source ``N(0, I_d)``, target ``sum_k w_k N(mu_k, s_k^2 I_d)`` (seed 004's
"128 dimensional Gaussian mixtures"): a target whose log-density (and score) is known
in closed form, so the evaluator can score generated samples against it
(``kl_density``, see :mod:`sbrun.pipeline.evaluator`).
"""

from __future__ import annotations

import math

import torch

from sbrun.data.distributions import Problem, StandardGaussian
from sbrun.data.gaussians import GaussianMixture
from sbrun.errors import ConfigError


def mixture_means(k: int, dim: int, radius: float, generator: torch.Generator) -> torch.Tensor:
    """``k`` means ``(k, dim)`` of norm ``radius`` in random directions (float64).

    For ``k <= dim`` the directions are orthonormal (QR of a Gaussian matrix): every pair
    of means is ``radius sqrt(2)`` apart.
    """
    a = torch.randn(dim, max(k, 1), generator=generator, dtype=torch.float64)
    if k <= dim:
        q, r = torch.linalg.qr(a)
        dirs = (q * torch.sign(r.diagonal())[None, :]).T[:k]
    else:
        dirs = (a / a.norm(dim=0, keepdim=True)).T
    return radius * dirs


def gmm_highdim(dim: int = 128, n_components: int = 5, radius: float = 4.0,
                std_min: float = 0.5, std_max: float = 1.0, seed: int = 0,
                generative: bool = False, name: str = "gmm_highdim") -> Problem:
    """``N(0, I_dim)`` (``t = 0``) -> a ``n_components`` Gaussian mixture (``t = 1``).

    Means: :func:`mixture_means` with ``radius``; component stds log-uniform in
    ``[std_min, std_max]``; weights uniform on ``[1, 2]`` then normalised; all drawn from
    ``torch.Generator().manual_seed(seed)``. ``generative=true`` leaves the source to
    the method's prior (the same ``N(0, I)`` for every method here).
    """
    if dim < 1 or n_components < 1:
        raise ConfigError(f"gmm_highdim: dim and n_components must be >= 1, got {dim}, "
                          f"{n_components}")
    if not 0 < std_min <= std_max:
        raise ConfigError(f"gmm_highdim: need 0 < std_min <= std_max, got {std_min}, {std_max}")
    g = torch.Generator().manual_seed(int(seed))
    means = mixture_means(n_components, dim, float(radius), g)
    u = torch.rand(n_components, generator=g, dtype=torch.float64)
    stds = torch.exp(math.log(std_min) + u * (math.log(std_max) - math.log(std_min)))
    weights = 1 + torch.rand(n_components, generator=g, dtype=torch.float64)
    target = GaussianMixture(weights, means, stds, name=f"gmm{n_components}_d{dim}")
    source = None if generative else StandardGaussian((dim,))
    return Problem(name, target, source, extra={"means": means, "stds": stds})
