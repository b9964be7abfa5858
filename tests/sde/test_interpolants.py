"""Interpolants: boundary conditions, derivatives against finite differences, marginals."""

import pytest
import torch

from sbrun.errors import ConfigError
from sbrun.sde.interpolants import GAMMAS, PATHS, make_interpolant

F64 = torch.float64


@pytest.mark.parametrize("path", PATHS)
def test_paths_join_the_ends(path):
    it = make_interpolant(path, "sin2" if path == "encoder_decoder" else "sqrt", 1.0)
    ends = torch.tensor([0.0, 1.0], dtype=F64)
    c = it.coefficients(ends)
    torch.testing.assert_close(c.alpha_t, torch.tensor([1.0, 0.0], dtype=F64))
    torch.testing.assert_close(c.beta_t, torch.tensor([0.0, 1.0], dtype=F64))
    torch.testing.assert_close(c.gamma_t, torch.zeros(2, dtype=F64))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("gamma", ["sqrt", "sin2"])
def test_derivatives_match_finite_differences(path, gamma):
    it = make_interpolant(path, gamma, 0.7)
    t = torch.linspace(0.03, 0.97, 41, dtype=F64)
    t = t[(t - 0.5).abs() > 0.02]  # the encoder-decoder's alpha, beta have a kink at 1/2
    h = 1e-6
    lo, hi, c = it.coefficients(t - h), it.coefficients(t + h), it.coefficients(t)
    for name in ("alpha_t", "beta_t", "gamma_t"):
        fd = (getattr(hi, name) - getattr(lo, name)) / (2 * h)
        torch.testing.assert_close(getattr(c, "d_" + name), fd, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(c.gamma_d_gamma_t, c.gamma_t * c.d_gamma_t)


def test_trigonometric_is_variance_preserving_and_sqrt_gamma_is_a_bridge():
    t = torch.rand(100, dtype=F64)
    c = make_interpolant("trigonometric", "sqrt", 2.0).coefficients(t)
    torch.testing.assert_close(c.alpha_t**2 + c.beta_t**2, torch.ones_like(t))
    torch.testing.assert_close(c.gamma_t**2, 2.0 * t * (1 - t))
    torch.testing.assert_close(c.gamma_d_gamma_t, 1.0 - 2.0 * t)  # a (1 - 2t) / 2, finite


def test_sample_has_the_interpolant_marginal():
    """x0 ~ N(0, 1), x1 ~ N(3, 0.5^2) independent: x_t ~ N(3 beta, alpha^2 + beta^2/4 + gamma^2)."""
    g = torch.Generator().manual_seed(0)
    n = 200_000
    it = make_interpolant("linear", "sqrt", 1.0)
    x0 = torch.randn(n, 1, generator=g, dtype=F64)
    x1 = 3 + 0.5 * torch.randn(n, 1, generator=g, dtype=F64)
    z = torch.randn(n, 1, generator=g, dtype=F64)
    t = torch.full((n,), 0.3, dtype=F64)
    x = it.sample(t, x0, x1, z)[:, 0]
    var = 0.7**2 + 0.3**2 * 0.25 + 0.3 * 0.7
    assert x.mean().item() == pytest.approx(0.9, abs=0.01)
    assert x.var().item() == pytest.approx(var, rel=0.01)


def test_velocity_is_the_time_derivative_of_the_sample():
    g = torch.Generator().manual_seed(1)
    x0, x1, z = (torch.randn(50, 3, generator=g, dtype=F64) for _ in range(3))
    t = torch.rand(50, generator=g, dtype=F64) * 0.9 + 0.05
    for path in PATHS:
        it = make_interpolant(path, "sin2", 1.0)
        h = 1e-6
        fd = (it.sample(t + h, x0, x1, z) - it.sample(t - h, x0, x1, z)) / (2 * h)
        torch.testing.assert_close(it.velocity(t, x0, x1, z), fd, atol=1e-5, rtol=1e-5)


def test_velocity_floor_keeps_the_ends_finite():
    it = make_interpolant("linear", "sqrt", 1.0)
    x = torch.ones(2, 1, dtype=F64)
    u = it.velocity(torch.tensor([0.0, 1.0], dtype=F64), x, x, x, gamma_min=1e-4)
    assert torch.isfinite(u).all()
    assert u[0, 0].item() == pytest.approx(0.5 / 1e-4)  # gamma gamma' / gamma_min


def test_bad_names():
    with pytest.raises(ConfigError, match="path"):
        make_interpolant("cubic")
    with pytest.raises(ConfigError, match="gamma"):
        make_interpolant("linear", "cosine")
    with pytest.raises(ConfigError, match="latent"):
        make_interpolant("encoder_decoder", "sin2", 0.0)


def test_constant_gamma_is_cfm_blur():
    it = make_interpolant("linear", "constant", 0.01)
    c = it.coefficients(torch.tensor([0.0, 0.5, 1.0], dtype=F64))
    torch.testing.assert_close(c.gamma_t, torch.full((3,), 0.1, dtype=F64))
    torch.testing.assert_close(c.d_gamma_t, torch.zeros(3, dtype=F64))
    assert "constant" in GAMMAS


@pytest.mark.parametrize("gamma", GAMMAS)
def test_sample_and_velocity_is_sample_then_velocity(gamma):
    """One evaluation of the coefficients gives what the two calls give, bit for bit."""
    it = make_interpolant("linear", gamma, 0.3)
    g = torch.Generator().manual_seed(0)
    t = torch.rand(64, generator=g, dtype=torch.float64).clamp(0.01, 0.99)
    x0, x1, z = (torch.randn(64, 3, generator=g, dtype=torch.float64) for _ in range(3))
    for noise in (None, z):
        xt, u = it.sample_and_velocity(t, x0, x1, noise)
        assert torch.equal(xt, it.sample(t, x0, x1, noise))
        assert torch.equal(u, it.velocity(t, x0, x1, noise))
