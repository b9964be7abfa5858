"""Couplings between point clouds and between Gaussians.

* :func:`solve_coupling` – exact / entropic (Sinkhorn) / independent plans between two
  clouds, cost ``|x - y|^2 / 2``, ``eps = sigma^2`` (POT ``reg = 2 sigma^2``);
* :func:`sample_pairs`, :func:`minibatch_pair`, :func:`barycentric_map` – use a plan;
* :mod:`sbrun.couplings.gaussian` – the closed-form Schrödinger bridge between Gaussians
  (laws: :class:`sbrun.data.gaussians.Gaussian`).
"""

from sbrun.couplings.base import CouplingResult, barycentric_map, half_sq_dists, sample_pairs
from sbrun.couplings.gaussian import (
    GaussianPlan,
    gaussian_eot_plan,
    gaussian_monge_map,
    gaussian_sb_conditional,
    gaussian_sb_marginal,
)
from sbrun.couplings.minibatch import minibatch_pair
from sbrun.couplings.pot import METHODS, sinkhorn_log, solve_coupling

__all__ = [
    "METHODS",
    "CouplingResult",
    "GaussianPlan",
    "barycentric_map",
    "gaussian_eot_plan",
    "gaussian_monge_map",
    "gaussian_sb_conditional",
    "gaussian_sb_marginal",
    "half_sq_dists",
    "minibatch_pair",
    "sample_pairs",
    "sinkhorn_log",
    "solve_coupling",
]
