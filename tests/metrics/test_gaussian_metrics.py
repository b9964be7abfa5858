"""cBW2-UVP and plan BW2-UVP against the closed-form Gaussian bridge."""

import pytest
import torch

from sbrun.couplings import gaussian_sb_conditional
from sbrun.data.gaussians import Gaussian, sqrtm_psd
from sbrun.errors import ConfigError
from sbrun.metrics.gaussian import cbw2_uvp, plan_error

F64 = torch.float64
G0 = Gaussian(torch.tensor([0.0, 1.0]), torch.tensor([[1.0, 0.3], [0.3, 0.5]]), dtype=torch.float64)
G1 = Gaussian(torch.tensor([2.0, -1.0]), torch.tensor([[0.6, -0.2], [-0.2, 1.2]]), dtype=torch.float64)
SIGMA = 0.7


def _true_draws(x0, k, gen):
    """``(n, k, d)`` draws from the true SB conditional at each ``x0``."""
    mean, cov = gaussian_sb_conditional(G0, G1, SIGMA, x0)
    z = torch.randn(x0.shape[0], k, 2, generator=gen, dtype=F64)
    return mean[:, None, :] + z @ sqrtm_psd(cov)


def test_cbw2_true_sampler_scores_near_zero():
    gen = torch.Generator().manual_seed(0)
    x0 = G0.sample(200, gen)
    score = cbw2_uvp(x0, _true_draws(x0, 1000, gen), G0, G1, SIGMA)
    assert 0 <= score < 1.0
    # k draws: the documented finite-k floor 100 tr(S*)(1 + (d+1)/4) / (k tr B)
    few = cbw2_uvp(x0, _true_draws(x0, 16, gen), G0, G1, SIGMA)
    cov = gaussian_sb_conditional(G0, G1, SIGMA, x0)[1]
    floor = 100 * float(cov.trace()) * 1.75 / (16 * float(G1.cov.trace()))
    assert 0.75 * floor < few < 1.25 * floor


def test_cbw2_conditional_mean_map_scores_exactly_the_conditional_variance():
    x0 = G0.sample(50, torch.Generator().manual_seed(1))
    mean, cov = gaussian_sb_conditional(G0, G1, SIGMA, x0)
    expected = 100 * float(cov.trace()) / float(G1.cov.trace())
    assert cbw2_uvp(x0, mean, G0, G1, SIGMA) == pytest.approx(expected, rel=1e-9)
    assert cbw2_uvp(x0, mean[:, None, :], G0, G1, SIGMA) == pytest.approx(expected, rel=1e-9)


def test_cbw2_independent_coupling_scores_large():
    gen = torch.Generator().manual_seed(2)
    x0 = G0.sample(200, gen)
    indep = G1.sample(200 * 200, gen).reshape(200, 200, 2)
    good = cbw2_uvp(x0, _true_draws(x0, 200, gen), G0, G1, SIGMA)
    bad = cbw2_uvp(x0, indep, G0, G1, SIGMA)
    assert bad > 10.0 and bad > 10 * good


def test_plan_error_true_pairs_near_zero_independent_large():
    gen = torch.Generator().manual_seed(3)
    x0 = G0.sample(20_000, gen)
    x1 = _true_draws(x0, 1, gen)[:, 0]
    assert 0 <= plan_error(x0, x1, G0, G1, SIGMA) < 1.0
    assert plan_error(x0, G1.sample(20_000, gen), G0, G1, SIGMA) > 10.0
    # right marginals, wrong coupling strength: the pairs of a larger sigma
    assert plan_error(x0, x1, G0, G1, 0.1) > 2.5


def test_metric_shapes_are_checked():
    x0 = torch.zeros(10, 2, dtype=F64)
    with pytest.raises(ConfigError):
        cbw2_uvp(x0, torch.zeros(9, 3, 2), G0, G1, SIGMA)
    with pytest.raises(ConfigError):
        plan_error(x0, torch.zeros(10, 3), G0, G1, SIGMA)


def test_coordinate_plan_kl_against_the_closed_form():
    """The DSBM paper's Gaussian problem, N(-a 1, I) -> N(a 1, I), sigma = 1: true pairs
    score ~0 (estimation bias ~2.5 / n nats), the independent coupling scores
    d KL(rho = 0 || rho = c) = d/2 (2 / (1 - c^2) - 2 + log(1 - c^2)) with the bridge's
    correlation c = (sqrt(5) - 1) / 2, and a shifted target mean d delta^2 / (2 (1 - c^2))."""
    from sbrun.couplings.gaussian import gaussian_sb_conditional
    from sbrun.metrics.gaussian import coordinate_plan_kl

    d, a, n = 20, 0.1, 20_000
    eye = torch.eye(d, dtype=F64)
    g0, g1 = Gaussian(-a * torch.ones(d), eye, dtype=F64), Gaussian(a * torch.ones(d), eye, dtype=F64)
    gen = torch.Generator().manual_seed(0)
    x0 = g0.sample(n, gen)
    mean, cov = gaussian_sb_conditional(g0, g1, 1.0, x0)
    x1 = mean + torch.randn(n, d, generator=gen, dtype=F64) @ sqrtm_psd(cov)
    c = (5**0.5 - 1) / 2
    assert float(cov[0, 0]) == pytest.approx(1 - c**2, rel=1e-9)  # the bridge's correlation
    assert 0 <= coordinate_plan_kl(x0, x1, g0, g1, 1.0) < d * 10 / n
    indep = coordinate_plan_kl(x0, g1.sample(n, gen), g0, g1, 1.0)
    v = 1 - c**2
    assert indep == pytest.approx(d / 2 * (2 / v - 2 + torch.log(torch.tensor(v)).item()), rel=0.03)
    shifted = coordinate_plan_kl(x0, x1 + 0.05, g0, g1, 1.0)
    assert shifted == pytest.approx(d * 0.05**2 / (2 * v), rel=0.2)
    with pytest.raises(ConfigError, match="isotropic"):
        coordinate_plan_kl(x0[:, :2], x1[:, :2], G0, G1, SIGMA)
