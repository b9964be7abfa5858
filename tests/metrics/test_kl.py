"""KL estimators: 2D KDE on a grid, k-NN entropy vs a density, Gaussian closed form."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from sbrun.data import gaussian_pair, make_toy
from sbrun.errors import DataError
from sbrun.metrics.kl import kl_2d, kl_gaussian, kl_to_density, knn_entropy

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _normal(n: int, shift, seed: int) -> torch.Tensor:
    return torch.randn(n, 2, generator=_gen(seed), dtype=F64) + torch.tensor(shift, dtype=F64)


def test_kl_gaussian_known_values():
    one = torch.ones(1, 1, dtype=F64)
    # KL(N(0, 1) || N(1, 4)) = log 2 + (1 + 1) / 8 - 1/2
    got = kl_gaussian(torch.zeros(1), one, torch.ones(1), 4 * one)
    assert math.isclose(got, math.log(2) + 0.25 - 0.5, rel_tol=1e-12)
    eye = torch.eye(2, dtype=F64)
    assert math.isclose(kl_gaussian(torch.zeros(2), eye, torch.tensor([1.0, 0.0]), eye), 0.5)
    assert abs(kl_gaussian(torch.zeros(2), eye, torch.zeros(2), eye)) < 1e-14


def test_kl_gaussian_matches_torch():
    g0, g1 = gaussian_pair(5, seed=2)
    want = kl_divergence(MultivariateNormal(g0.mean, g0.cov), MultivariateNormal(g1.mean, g1.cov))
    assert math.isclose(kl_gaussian(g0.mean, g0.cov, g1.mean, g1.cov), float(want), rel_tol=1e-10)


def test_kl_2d_same_distribution_is_small():
    assert 0 <= kl_2d(_normal(5000, [0.0, 0.0], 1), _normal(5000, [0.0, 0.0], 2)) < 0.05
    toy = make_toy("moons")
    assert kl_2d(toy.sample(5000, _gen(3)), toy.sample(5000, _gen(4))) < 0.05


@pytest.mark.parametrize("shift", [[1.0, 0.0], [1.0, 1.0]])
def test_kl_2d_shifted_gaussians(shift):
    exact = 0.5 * sum(s * s for s in shift)  # KL(N(0, I) || N(shift, I))
    got = kl_2d(_normal(8000, [0.0, 0.0], 5), _normal(8000, shift, 6))
    assert math.isclose(got, exact, rel_tol=0.2), (got, exact)


def test_kl_2d_options():
    p, q = _normal(3000, [0.0, 0.0], 7), _normal(3000, [1.0, 0.0], 8)
    a = kl_2d(p, q, bandwidth=0.3, lim=6.0)
    b = kl_2d(p, q, bandwidth=0.3, lim=(-6.0, 6.0))
    c = kl_2d(p, q, bandwidth=0.3, lim=[(-6.0, 6.0), (-6.0, 6.0)])
    assert a == b == c
    # smoothing with h = 0.3 estimates the KL of N(., (1 + h^2) I): 0.5 / 1.09
    assert math.isclose(a, 0.5 / 1.09, rel_tol=0.2)
    assert kl_2d(p.float(), q.float(), bins=32) > 0.3


def test_kl_2d_nan_and_shape_errors():
    p = _normal(100, [0.0, 0.0], 9)
    bad = p.clone()
    bad[0, 0] = float("nan")
    assert math.isnan(kl_2d(bad, p))
    with pytest.raises(DataError):
        kl_2d(torch.zeros(10, 3), p)


def test_knn_entropy_standard_normal():
    x = torch.randn(4000, 2, generator=_gen(10), dtype=F64)
    assert math.isclose(knn_entropy(x), math.log(2 * math.pi * math.e), abs_tol=0.05)


@pytest.mark.parametrize("dim", [2, 3])
def test_kl_to_density_gaussians(dim):
    g0, g1 = gaussian_pair(dim, seed=dim)
    x = g0.sample(4000, _gen(11)).double()
    exact = kl_gaussian(g0.mean, g0.cov, g1.mean, g1.cov)
    got = kl_to_density(x, g1.log_prob)
    assert math.isclose(got, exact, rel_tol=0.1, abs_tol=0.05), (got, exact)
    assert abs(kl_to_density(x, g0.log_prob)) < 0.05
