"""Closed-form Gaussian Schrödinger bridge: limits, optimality, agreement with Sinkhorn."""

import math

import pytest
import torch
from torch.testing import assert_close

from sbrun.couplings import (
    gaussian_eot_plan,
    gaussian_monge_map,
    gaussian_sb_conditional,
    gaussian_sb_marginal,
    sample_pairs,
    solve_coupling,
)
from sbrun.couplings.gaussian import gaussian_cross_cov
from sbrun.data.gaussians import Gaussian, sqrtm_psd
from sbrun.errors import ConfigError

F64 = torch.float64
G0 = Gaussian(torch.tensor([0.0, 1.0]), torch.tensor([[1.0, 0.3], [0.3, 0.5]]), dtype=F64)
G1 = Gaussian(torch.tensor([2.0, -1.0]), torch.tensor([[0.6, -0.2], [-0.2, 1.2]]), dtype=F64)


def _random_gaussian(d, seed):
    g = torch.Generator().manual_seed(seed)
    L = torch.randn(d, d, generator=g, dtype=F64)
    return Gaussian(torch.randn(d, generator=g, dtype=F64), L @ L.T + 0.2 * torch.eye(d, dtype=F64),
                    dtype=F64)


def test_sqrtm_psd():
    S = _random_gaussian(4, 0).cov
    R = sqrtm_psd(S)
    assert_close(R @ R, S)
    assert_close(sqrtm_psd(S, -0.5) @ S @ sqrtm_psd(S, -0.5), torch.eye(4, dtype=F64))


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.0])
def test_one_dimensional_closed_form(sigma):
    a, b = 0.7, 2.5
    g0 = Gaussian(torch.zeros(1), torch.tensor([[a]], dtype=F64))
    g1 = Gaussian(torch.ones(1), torch.tensor([[b]], dtype=F64))
    # argmin_c  -c - (eps / 2) log(ab - c^2): c^2 + eps c - ab = 0
    expected = (math.sqrt(4 * a * b + sigma**4) - sigma**2) / 2
    assert float(gaussian_cross_cov(g0, g1, sigma)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("sigma", [0.2, 1.0, 3.0])
def test_plan_solves_the_schrodinger_system(sigma):
    """``log pi(x, y) + |x - y|^2 / (2 sigma^2)`` must split as ``phi(x) + psi(y)``: the
    x-y block of the joint precision is ``-I / sigma^2`` (any d, non-commuting A, B)."""
    g0, g1 = _random_gaussian(3, 1), _random_gaussian(3, 2)
    plan = gaussian_eot_plan(g0, g1, sigma)
    prec = torch.linalg.inv(plan.cov)
    assert_close(prec[:3, 3:], -torch.eye(3, dtype=F64) / sigma**2, atol=1e-9, rtol=1e-9)
    assert_close(plan.cov[:3, :3], g0.cov)
    assert_close(plan.cov[3:, 3:], g1.cov)
    assert_close(plan.cov[:3, 3:], plan.cross)
    assert bool(torch.linalg.eigvalsh(plan.cov).min() > 0)


def test_sigma_to_zero_gives_the_monge_map():
    g0, g1 = _random_gaussian(3, 3), _random_gaussian(3, 4)
    A, B = g0.cov, g1.cov
    Ah, Aih = sqrtm_psd(A), sqrtm_psd(A, -0.5)
    T = Aih @ sqrtm_psd(Ah @ B @ Ah) @ Aih  # classical Bures OT map
    assert_close(gaussian_monge_map(g0, g1), T)
    assert_close(T @ A @ T, B)  # pushes N(m0, A) to N(m1, B)
    x0 = g0.sample(10, torch.Generator().manual_seed(0))
    for sigma in (1e-3, 0.0):
        mean, cov = gaussian_sb_conditional(g0, g1, sigma, x0)
        assert_close(mean, g1.mean + (x0 - g0.mean) @ T, atol=1e-5, rtol=0)
        assert float(cov.abs().max()) < 1e-5
    big = gaussian_sb_conditional(g0, g1, 10.0, x0)[1]
    assert_close(big, B, atol=0.05, rtol=0)  # sigma -> inf: independent coupling


def test_marginals_and_bridge_endpoints():
    for t in (0.0, 1.0):
        m = gaussian_sb_marginal(G0, G1, 0.7, t)
        ref = G0 if t == 0 else G1
        assert_close(m.mean, ref.mean)
        assert_close(m.cov, ref.cov)
    # Monte-Carlo: x_t = (1-t) x0 + t x1 + sigma sqrt(t(1-t)) z with (x0, x1) ~ plan
    sigma, t, n = 0.7, 0.3, 200_000
    plan = gaussian_eot_plan(G0, G1, sigma)
    gen = torch.Generator().manual_seed(0)
    z = plan.sample(n, gen)
    xt = (1 - t) * z[:, :2] + t * z[:, 2:] + sigma * math.sqrt(t * (1 - t)) * torch.randn(
        n, 2, generator=gen, dtype=F64)
    m = gaussian_sb_marginal(G0, G1, sigma, t)
    assert_close(xt.mean(0), m.mean, atol=1e-2, rtol=0)
    assert_close(torch.cov(xt.T), m.cov, atol=1e-2, rtol=0)


def test_conditional_matches_joint():
    sigma = 0.5
    plan = gaussian_eot_plan(G0, G1, sigma)
    x0 = torch.tensor([[0.5, 0.5], [-1.0, 2.0]], dtype=F64)
    mean, cov = gaussian_sb_conditional(G0, G1, sigma, x0)
    S = plan.cov
    K = S[2:, :2] @ torch.linalg.inv(S[:2, :2])
    assert_close(mean, G1.mean + (x0 - G0.mean) @ K.T)
    assert_close(cov, S[2:, 2:] - K @ S[:2, 2:])


@pytest.mark.parametrize("sigma", [0.5, 1.0])
def test_closed_form_matches_discrete_sinkhorn(sigma):
    """Empirical cross-covariance of the discrete entropic plan between samples."""
    gen = torch.Generator().manual_seed(0)
    x, y = G0.sample(1500, gen), G1.sample(1500, gen)
    r = solve_coupling(x, y, method="sinkhorn", sigma=sigma)
    assert r.converged
    xc, yc = x - x.mean(0), y - y.mean(0)
    C = gaussian_cross_cov(G0, G1, sigma)
    assert_close(xc.T @ r.plan @ yc, C, atol=0.05, rtol=0)  # plan-weighted
    i, j = sample_pairs(r.plan, 20_000, gen)
    pairs = torch.cat([x[i], y[j]], 1)
    assert_close(torch.cov(pairs.T)[:2, 2:], C, atol=0.05, rtol=0)  # sampled pairs
    wrong = gaussian_cross_cov(G0, G1, sigma * math.sqrt(2))  # eps = 2 sigma^2 by mistake
    assert float((xc.T @ r.plan @ yc - wrong).abs().max()) > 0.08


def test_gaussian_sample_and_log_prob():
    g = _random_gaussian(3, 5)
    x = g.sample(100_000, torch.Generator().manual_seed(1))
    assert x.shape == (100_000, 3)
    assert_close(x.mean(0), g.mean, atol=0.03, rtol=0)
    assert_close(torch.cov(x.T), g.cov, atol=0.05, rtol=0.02)
    ref = torch.distributions.MultivariateNormal(g.mean, g.cov)
    assert_close(g.log_prob(x[:50]), ref.log_prob(x[:50]))


def test_bad_input():
    with pytest.raises(ConfigError):
        Gaussian(torch.zeros(2), torch.eye(3))
    with pytest.raises(ConfigError):
        gaussian_eot_plan(G0, _random_gaussian(3, 0), 1.0)
    with pytest.raises(ConfigError):
        gaussian_eot_plan(G0, G1, -1.0)
    with pytest.raises(ConfigError):
        gaussian_sb_marginal(G0, G1, 1.0, 1.5)
