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
