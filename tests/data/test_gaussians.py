"""Gaussians and Gaussian mixtures: sampling, exact log_prob / score, SPD helpers."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from sbrun.data import GaussianDistribution, GaussianMixture, gaussian_pair, random_spd
from sbrun.errors import ConfigError

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _autograd_score(dist, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(dist.log_prob(x).sum(), x)
    return g


@pytest.mark.parametrize("d,cond", [(1, 1.0), (2, 3.0), (5, 10.0), (16, 1e3)])
def test_random_spd(d, cond):
    s = random_spd(d, _gen(d), cond=cond)
    assert s.shape == (d, d) and s.dtype == F64
    torch.testing.assert_close(s, s.T, rtol=0, atol=0)
    ev = torch.linalg.eigvalsh(s)
    assert bool((ev > 0).all())
    assert math.isclose(float(ev.max() / ev.min()), cond, rel_tol=1e-8)
    assert math.isclose(float(s.trace()), d, rel_tol=1e-10)
    torch.testing.assert_close(s, random_spd(d, _gen(d), cond=cond), rtol=0, atol=0)


def test_random_spd_rejects_bad_cond():
    with pytest.raises(ConfigError):
        random_spd(3, _gen(), cond=0.5)


def test_gaussian_log_prob_and_score():
    g0, _ = gaussian_pair(4, seed=3, mean0=[0.5, -1.0, 2.0, 0.0])
    x = torch.randn(64, 4, generator=_gen(1), dtype=F64)
    ref = MultivariateNormal(g0.mean, covariance_matrix=g0.cov)
    torch.testing.assert_close(g0.log_prob(x), ref.log_prob(x))
    torch.testing.assert_close(g0.score(x), _autograd_score(g0, x))
    torch.testing.assert_close(g0.score(x), -(x - g0.mean) @ torch.linalg.inv(g0.cov))


def test_gaussian_sampling_moments_and_determinism():
    cov = torch.tensor([[2.0, 0.6], [0.6, 0.5]], dtype=F64)
    g = GaussianDistribution([1.0, -2.0], cov)
    x = g.sample(100_000, _gen(2))
    assert x.shape == (100_000, 2) and x.dtype == torch.float32
    torch.testing.assert_close(x.double().mean(0), g.mean, atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(x.double().T), cov, atol=0.03, rtol=0)
    torch.testing.assert_close(g.sample(10, _gen(7)), g.sample(10, _gen(7)), rtol=0, atol=0)


def test_gaussian_rejects_bad_cov():
    with pytest.raises(ConfigError):
        GaussianDistribution([0.0, 0.0], torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ConfigError):
        GaussianDistribution([0.0, 0.0, 0.0], torch.eye(2))


def test_gaussian_pair_defaults_and_overrides():
    g0, g1 = gaussian_pair(3, seed=11)
    h0, h1 = gaussian_pair(3, seed=11)
    torch.testing.assert_close(g0.cov, h0.cov, rtol=0, atol=0)
    torch.testing.assert_close(g1.cov, h1.cov, rtol=0, atol=0)
    assert not torch.allclose(g0.cov, g1.cov)
    torch.testing.assert_close(g0.mean, torch.zeros(3, dtype=F64))
    torch.testing.assert_close(g1.mean, torch.ones(3, dtype=F64))
    k0, k1 = gaussian_pair(3, seed=11, mean0=2.0, cov1=torch.eye(3))
    torch.testing.assert_close(k0.mean, torch.full((3,), 2.0, dtype=F64))
    torch.testing.assert_close(k1.cov, torch.eye(3, dtype=F64))
    torch.testing.assert_close(k0.cov, g0.cov)


def _mixture_2d() -> GaussianMixture:
    means = torch.tensor([[-1.0, 0.0], [1.5, 1.0], [0.0, -2.0]])
    return GaussianMixture([0.2, 0.5, 0.3], means, std=[0.3, 0.6, 0.4])


def test_mixture_integrates_to_one():
    gm = _mixture_2d()
    n, half = 500, 5.0
    c = (torch.arange(n, dtype=F64) + 0.5) * (2 * half / n) - half
    xx, yy = torch.meshgrid(c, c, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    total = float(gm.log_prob(pts).exp().sum() * (2 * half / n) ** 2)
    assert math.isclose(total, 1.0, abs_tol=1e-4)


def test_mixture_single_component_is_gaussian():
    gm = GaussianMixture([3.0], torch.tensor([[1.0, 2.0, 3.0]]), std=0.7)
    g = GaussianDistribution([1.0, 2.0, 3.0], 0.49 * torch.eye(3))
    x = torch.randn(20, 3, generator=_gen(3), dtype=F64)
    torch.testing.assert_close(gm.log_prob(x), g.log_prob(x))
    torch.testing.assert_close(gm.score(x), g.score(x))


def test_mixture_score_matches_autograd_d128():
    d, k = 128, 4
    means = 3.0 * torch.randn(k, d, generator=_gen(4), dtype=F64) / math.sqrt(d)
    gm = GaussianMixture(torch.ones(k), means, std=0.5)
    x = gm.sample(32, _gen(5)).double()
    lp = gm.log_prob(x)
    assert lp.shape == (32,) and bool(torch.isfinite(lp).all())
    torch.testing.assert_close(gm.score(x), _autograd_score(gm, x))


def test_mixture_sampling():
    gm = _mixture_2d()
    x = gm.sample(100_000, _gen(6)).double()
    want = gm.weights @ gm.means
    torch.testing.assert_close(x.mean(0), want, atol=0.02, rtol=0)
    torch.testing.assert_close(gm.sample(5, _gen(8)), gm.sample(5, _gen(8)), rtol=0, atol=0)


def test_mixture_rejects_bad_parameters():
    with pytest.raises(ConfigError):
        GaussianMixture([1.0, -1.0], torch.zeros(2, 2))
    with pytest.raises(ConfigError):
        GaussianMixture([1.0, 1.0], torch.zeros(2, 2), std=0.0)
    with pytest.raises(ConfigError):
        GaussianMixture([1.0, 1.0, 1.0], torch.zeros(2, 2))
