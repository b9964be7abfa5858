"""Gaussians and Gaussian mixtures: sampling, exact log_prob / score, SPD helpers."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from sbrun.data import Gaussian, GaussianMixture, gaussian_pair, random_spd
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
    g = Gaussian([1.0, -2.0], cov)
    x = g.sample(100_000, _gen(2))
    assert x.shape == (100_000, 2) and x.dtype == torch.float32
    torch.testing.assert_close(x.double().mean(0), g.mean, atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(x.double().T), cov, atol=0.03, rtol=0)
    torch.testing.assert_close(g.sample(10, _gen(7)), g.sample(10, _gen(7)), rtol=0, atol=0)


def test_gaussian_rejects_bad_cov():
    with pytest.raises(ConfigError):
        Gaussian([0.0, 0.0], torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ConfigError):
        Gaussian([0.0, 0.0, 0.0], torch.eye(2))


def test_gaussian_data_draw_is_mean_plus_z_cholesky():
    """The seeded draw of data: ``m + z L^T``, ``z: (n, d)`` float64 from the generator."""
    cov = torch.tensor([[2.0, 0.6], [0.6, 0.5]], dtype=F64)
    m = torch.tensor([1.0, -2.0], dtype=F64)
    z = torch.randn((7, 2), generator=_gen(5), dtype=F64)
    expected = (m + z @ torch.linalg.cholesky(cov).T).float()
    torch.testing.assert_close(Gaussian(m, cov).sample(7, _gen(5)), expected, rtol=0, atol=0)


def test_singular_cov_samples_on_its_support_but_has_no_density():
    """``N(0, [[1, 1], [1, 1]])`` (a deterministic plan): draws ``(u, u)``, ``u ~ N(0, 1)``."""
    g = Gaussian([0.0, 0.0], torch.ones(2, 2), dtype=F64)
    x = g.sample(50_000, _gen(6))
    torch.testing.assert_close(x[:, 0], x[:, 1], rtol=0, atol=1e-7)
    torch.testing.assert_close(torch.cov(x.T), torch.ones(2, 2, dtype=F64), atol=0.03, rtol=0)
    with pytest.raises(ConfigError, match="singular"):
        g.log_prob(x[:3])


def test_isotropic_rows_log_prob_score_and_draws():
    """One law per row ``N(mean[i], std[i]^2 I)``: against ``MultivariateNormal`` row by row."""
    mean = torch.tensor([[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]], dtype=F64)
    std = torch.tensor([[0.5], [1.0], [2.0]], dtype=F64)
    g = Gaussian(mean, std=std)
    assert g.isotropic and g.shape == (2,) and g.dtype == F64
    x = torch.randn(3, 2, generator=_gen(8), dtype=F64)
    ref = torch.stack([MultivariateNormal(mean[i], std[i, 0] ** 2 * torch.eye(2, dtype=F64))
                       .log_prob(x[i]) for i in range(3)])
    torch.testing.assert_close(g.log_prob(x), ref)
    torch.testing.assert_close(g.score(x), _autograd_score(g, x))
    gen = _gen(9)
    draws = torch.stack([g.sample(generator=gen) for _ in range(5000)])  # (K, 3, 2)
    torch.testing.assert_close(draws.mean(0), mean, atol=0.1, rtol=0)
    torch.testing.assert_close(draws.std(0), std.expand(3, 2), atol=0.1, rtol=0)
    with pytest.raises(ConfigError, match="one draw per row"):
        g.sample(4)
    with pytest.raises(ConfigError, match="exactly one of cov"):
        Gaussian(mean, torch.eye(2), std=std)


def test_one_gaussian_type_for_data_couplings_and_sdes():
    from sbrun.couplings import gaussian_eot_plan, gaussian_sb_marginal
    from sbrun.sde import VP, Brownian

    g0, g1 = gaussian_pair(2, seed=1)
    x = torch.zeros(4, 2)
    t = torch.full((4,), 0.5)
    laws = [g0, gaussian_eot_plan(g0, g1, 1.0), gaussian_sb_marginal(g0, g1, 1.0, 0.3),
            Brownian(1.0).bridge(t, x, x + 1), Brownian(1.0).marginal(t, x), VP().marginal(t, x)]
    assert all(isinstance(law, Gaussian) for law in laws)
    torch.testing.assert_close(laws[3].std.flatten(), torch.full((4,), 0.5))  # sqrt(t(1-t))


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
    g = Gaussian([1.0, 2.0, 3.0], 0.49 * torch.eye(3))
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
