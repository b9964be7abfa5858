"""Data: distributions, 2D toys, Gaussians / mixtures, and user ``.npz`` point clouds."""

from sbrun.data.distributions import Distribution, Empirical, Problem, StandardGaussian
from sbrun.data.files import load_npz, load_paired_npz
from sbrun.data.gaussians import (
    Gaussian,
    GaussianMixture,
    gaussian_pair,
    random_spd,
)
from sbrun.data.toy2d import TOY2D, make_toy

__all__ = [
    "Distribution",
    "StandardGaussian",
    "Empirical",
    "Problem",
    "make_toy",
    "TOY2D",
    "Gaussian",
    "GaussianMixture",
    "gaussian_pair",
    "random_spd",
    "load_npz",
    "load_paired_npz",
]
