"""VP / sub-VP / VE: coefficients against simulation, bridges, DDPM's chain in the limit."""

import math

import pytest
import torch

from sbrun.errors import ConfigError
from sbrun.sde import VE, VP, SubVP
from sbrun.sde.noising import BrownianNoising

F64 = torch.float64


SDES = {
    "vp": lambda: VP(),
    "vp-cosine": lambda: VP(schedule="cosine"),
    "subvp": lambda: SubVP(),
    "ve": lambda: VE(0.05, 3.0),
    "brownian": lambda: BrownianNoising(1.5),
}


def simulate(sde, x0, n_steps, s_end=1.0, gen=None, record=()):
    """Euler–Maruyama of the forward (noising) SDE from ``x0`` on ``[0, s_end]``."""
    hs = s_end / n_steps
    x, out = x0.clone(), {}
    for k in range(n_steps):
        s = torch.full((x.shape[0],), k * hs, dtype=F64)
        z = torch.randn(x.shape, generator=gen, dtype=F64)
        x = x + hs * sde.drift(s, x) + sde.diffusion(s)[:, None] * math.sqrt(hs) * z
        for r in record:
            if abs((k + 1) * hs - r) < 1e-9:
                out[r] = x.clone()
    return x, out


@pytest.mark.parametrize("name", list(SDES))
def test_marginal_matches_the_simulated_sde(name):
    """drift and diffusion integrate to the closed-form marginal N(alpha_s x0, sigma_s^2)."""
    sde, g = SDES[name](), torch.Generator().manual_seed(0)
    n, s_end = 5000, 0.9
    x0 = torch.tensor([[1.5, -0.5]], dtype=F64).expand(n, 2)
    _, xs = simulate(sde, x0, 450, s_end, g, record=(0.3, s_end))
    for s, x in xs.items():
        m = sde.marginal(torch.full((1,), s, dtype=F64), x0[:1])
        std = m.std.item()
        torch.testing.assert_close(x.mean(0), m.mean[0], atol=5 * std / n**0.5 + 2e-3, rtol=0)
        torch.testing.assert_close(x.std(0), torch.full((2,), std, dtype=F64), rtol=0.04, atol=0)


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_bridge_is_the_process_conditioned_on_its_end(name):
    """Regress simulated X_s on X_1: slope, intercept and residual variance = bridge(s, x0, x1)."""
    sde, g = SDES[name](), torch.Generator().manual_seed(1)
    n, s = 10_000, 0.4
    x0 = torch.full((n, 1), 0.8, dtype=F64)
    x1, rec = simulate(sde, x0, 500, 1.0, g, record=(s,))
    xs = rec[s]
    a = torch.stack([torch.ones(n, dtype=F64), x1[:, 0]], 1)
    coef = torch.linalg.lstsq(a, xs).solution[:, 0]
    resid = (xs[:, 0] - a @ coef).var()
    st = torch.full((1,), s, dtype=F64)
    b0 = sde.bridge(st, x0[:1], torch.zeros(1, 1, dtype=F64))
    b1 = sde.bridge(st, x0[:1], torch.ones(1, 1, dtype=F64))
    slope, intercept = (b1.mean - b0.mean).item(), b0.mean.item()
    assert abs(coef[1].item() - slope) < 0.02 * max(1.0, abs(slope)), (coef, slope)
    assert abs(coef[0].item() - intercept) < 0.03, (coef, intercept)
    assert abs(resid.item() / b0.std.item() ** 2 - 1) < 0.05


@pytest.mark.parametrize("name", ["vp", "subvp", "ve", "brownian"])
def test_bridge_drift_simulates_the_bridge(name):
    """The Doob h-transform started at x0 has the closed-form bridge marginals."""
    sde, g = SDES[name](), torch.Generator().manual_seed(2)
    n, steps, s_end = 2000, 450, 0.9
    x0 = torch.full((n, 2), 0.3, dtype=F64)
    x1 = torch.tensor([[0.7, -1.2]], dtype=F64).expand(n, 2)
    x, h = x0.clone(), s_end / steps
    for k in range(steps):
        s = torch.full((n,), k * h, dtype=F64)
        z = torch.randn(x.shape, generator=g, dtype=F64)
        x = x + h * sde.bridge_drift(s, x, x1) + sde.diffusion(s)[:, None] * math.sqrt(h) * z
    b = sde.bridge(torch.full((1,), s_end, dtype=F64), x0[:1], x1[:1])
    std = b.std.item()
    torch.testing.assert_close(x.mean(0), b.mean[0], atol=5 * std / n**0.5 + 5e-3, rtol=0)
    torch.testing.assert_close(x.std(0), torch.full((2,), std, dtype=F64), rtol=0.05, atol=0)


def test_prior_is_the_terminal_marginal():
    for sde in (VP(), SubVP(), VP(schedule="cosine")):
        s1 = torch.ones(1, dtype=F64)
        assert sde.log_alpha(s1).exp().item() < 0.01 and abs(sde.var(s1).item() - 1) < 1e-3
        assert sde.prior_std == 1.0
    ve = VE(0.01, 7.0)
    assert abs(ve.var(torch.ones(1, dtype=F64)).item() ** 0.5 - 7.0) < 1e-4
    assert ve.prior(5, (3,)).shape == (5, 3) and ve.prior_distribution((3,)).std == 7.0
    lp = ve.prior_distribution((2,)).log_prob(torch.zeros(1, 2))
    assert abs(lp.item() + math.log(2 * math.pi * 49)) < 1e-5


def test_time_convention_round_trip():
    sde = VP(s_min=1e-3)
    t = torch.tensor([0.0, 0.25, 1.0], dtype=F64)
    s = sde.to_noising_time(t)
    torch.testing.assert_close(s, torch.tensor([1.0, 1 - 0.999 * 0.25, 1e-3], dtype=F64))
    torch.testing.assert_close(sde.to_sbrun_time(s), t)
    assert sde.ds_dt == pytest.approx(-0.999)


def test_subvp_variance_is_below_vp():
    s = torch.linspace(0.01, 1, 50, dtype=F64)
    assert bool((SubVP().var(s) < VP().var(s)).all())
    torch.testing.assert_close(SubVP().log_alpha(s), VP().log_alpha(s))


def test_ddpm_chain_converges_to_the_vp_sde():
    """Linear betas beta_i = beta((i-1)/(T-1))/T: sup_i |abar_i - alpha(i/T)^2| = O(1/T)."""
    sde, errs, ts = VP(), [], [100, 200, 400, 800]
    for n in ts:
        chain = sde.discretize(n)
        s = torch.arange(n + 1, dtype=F64) / n
        errs.append((chain.alphas_bar - torch.exp(2 * sde.log_alpha(s))).abs().max().item())
    slope = math.log(errs[-1] / errs[0]) / math.log(ts[-1] / ts[0])
    assert -1.2 < slope < -0.8, (errs, slope)
    assert errs[-1] < 5e-3
    # Ho et al.'s schedule: beta_1 = 1e-4, beta_T = 0.02 for T = 1000
    b = sde.discretize(1000).betas
    assert b[0].item() == pytest.approx(1e-4) and b[-1].item() == pytest.approx(0.02)


def test_ddpm_discrete_marginals_match_marginal_prob():
    sde = VP()
    chain = sde.discretize(2000)
    x0 = torch.tensor([[2.0, -1.0]], dtype=F64)
    for i in (1, 200, 1000, 2000):
        d, c = chain.marginal(i, x0), sde.marginal(torch.full((1,), i / 2000, dtype=F64), x0)
        torch.testing.assert_close(d.mean, c.mean, atol=2e-3, rtol=0)
        torch.testing.assert_close(d.std, c.std, atol=2e-3, rtol=0)


def test_cosine_chain_is_the_sde_at_the_grid():
    sde = VP(schedule="cosine")
    chain = sde.discretize(500)
    s = torch.arange(501, dtype=F64) / 500
    ref = torch.exp(2 * sde.log_alpha(s))
    torch.testing.assert_close(chain.alphas_bar, ref, atol=1e-10, rtol=1e-6)


def test_discrete_posterior_is_hos_eq7():
    chain = VP().discretize(100)
    x0, xt = torch.randn(4, 3, dtype=F64), torch.randn(4, 3, dtype=F64)
    ab, b = chain.alphas_bar, chain.betas
    for t in (1, 2, 50, 100):
        q = chain.posterior(t - 1, t, x0, xt)
        mean = (ab[t - 1].sqrt() * b[t - 1] / (1 - ab[t])) * x0 \
            + ((1 - b[t - 1]).sqrt() * (1 - ab[t - 1]) / (1 - ab[t])) * xt
        var = (1 - ab[t - 1]) / (1 - ab[t]) * b[t - 1]
        torch.testing.assert_close(q.mean, mean)
        torch.testing.assert_close(q.std.flatten(), var.sqrt().expand(4))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: VP(beta_min=5.0, beta_max=5.0), "beta_max must be > "),
        (lambda: VP(beta_min=2.0, beta_max=1.0), "beta_max must be > "),
        (lambda: SubVP(beta_min=2.0, beta_max=1.0), "beta_max must be > "),
        (lambda: VE(sigma_min=1.0, sigma_max=1.0), "sigma_max must be > "),
        (lambda: VE(sigma_min=2.0, sigma_max=1.0), "sigma_max must be > "),
        (lambda: VE(sigma_min=0.0, sigma_max=1.0), "sigma_max must be > "),
        (lambda: VP(schedule="quadratic"), "unknown sde.schedule"),
        (lambda: VP(s_min=1.0), "s_min"),
        (lambda: VP().discretize(1), "method.chain_steps"),
    ],
)
def test_bad_parameters_are_one_clear_error(make, message):
    with pytest.raises(ConfigError, match=message):
        make()
