"""Instantaneous change of variables: divergences and the probability-flow likelihood."""

import math

import pytest
import torch

from sbrun.errors import ConfigError
from sbrun.sde import VE, VP, SubVP
from sbrun.sde.noising import gaussian_marginal, gaussian_score
from sbrun.solvers.likelihood import divergence, log_likelihood

F64 = torch.float64
MEAN = torch.tensor([0.5, -1.0, 0.3], dtype=F64)
COV = torch.tensor([[0.6, 0.1, 0.0], [0.1, 0.4, -0.1], [0.0, -0.1, 0.9]], dtype=F64)



def gaussian_log_prob(x, mean, cov):
    return torch.distributions.MultivariateNormal(mean, cov).log_prob(x)


def gaussian_case(sde, n: int):
    """``(x, velocity, prior_log_prob, exact log p(x))`` for data N(MEAN, COV) under ``sde``:
    ``n`` draws of its marginal at ``s_min`` and the probability flow of the exact score."""
    score = gaussian_score(sde, MEAN, COV)
    m0, c0 = gaussian_marginal(sde, MEAN, COV, sde.s_min)
    m1, c1 = gaussian_marginal(sde, MEAN, COV, 1.0)
    x = m0 + torch.randn(n, 3, generator=torch.Generator().manual_seed(2), dtype=F64) \
        @ torch.linalg.cholesky(c0).T

    def velocity(s, y):
        return sde.reverse_drift(s, y, score(y, s), probability_flow=True)

    return x, velocity, lambda z: gaussian_log_prob(z, m1, c1), gaussian_log_prob(x, m0, c0)


def test_exact_and_hutchinson_divergence_of_a_linear_field():
    a = torch.randn(4, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    x = torch.randn(3000, 4, generator=torch.Generator().manual_seed(4), dtype=F64,
                    requires_grad=True)
    v = torch.tanh(x) @ a.T  # div = sum_i a_ii (1 - tanh(x_i)^2)
    expected = ((1 - torch.tanh(x) ** 2) * a.diagonal()).sum(1)
    torch.testing.assert_close(divergence(v, x), expected.detach())
    probe = torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(1)).to(F64) * 2 - 1
    est = divergence(torch.tanh(x) @ a.T, x, probe)
    se = (est - expected).std().item() / len(est) ** 0.5
    assert abs(est.mean().item() - expected.mean().item()) < 4 * se  # unbiased
    assert not torch.allclose(est, expected.detach())


@pytest.mark.parametrize("make", [VP, SubVP, lambda: VE(0.01, 4.0)], ids=["vp", "subvp", "ve"])
@pytest.mark.parametrize("method", ["exact", "hutchinson"])
def test_probability_flow_likelihood_is_the_gaussian_log_density(make, method):
    """log p_{s_min}(x) through the PF ODE = log N(x; alpha m, C_{s_min}) exactly."""
    sde = make()
    x, velocity, prior_log_prob, exact = gaussian_case(sde, 200)
    ll = log_likelihood(velocity, x, (sde.s_min, 1.0), prior_log_prob, method=method, rtol=1e-7,
                        atol=1e-7, generator=torch.Generator().manual_seed(3))
    if method == "exact":
        torch.testing.assert_close(ll.logp, exact, atol=1e-4, rtol=0)
    else:  # one probe per sample: unbiased per sample, exact on average
        assert abs(ll.logp.mean().item() - exact.mean().item()) < 0.15
    assert ll.nfe > 0 and ll.z.shape == x.shape
    torch.testing.assert_close(ll.logp, ll.prior_logp + ll.delta)


def test_unknown_divergence():
    with pytest.raises(ConfigError, match="unknown divergence"):
        log_likelihood(lambda s, y: y, torch.zeros(2, 1), (0.0, 1.0), lambda z: z[:, 0],
                       method="trace")


def test_auto_is_exact_in_low_dimension():
    x = torch.randn(5, 2, dtype=F64)
    ll = log_likelihood(lambda s, y: -y, x, (0.0, 1.0), lambda z: -0.5 * (z**2).sum(1),
                        rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ll.delta, torch.full((5,), -2.0, dtype=F64))  # div(-y) = -d
    assert math.isfinite(ll.logp.sum().item())


@pytest.mark.parametrize("scheme, steps", [("rk4", 60), ("heun", 400)])
def test_fixed_step_likelihood_is_the_gaussian_log_density(scheme, steps):
    """sbrun's fixed-step schemes on the augmented ODE [x, delta]: the same exact answer."""
    sde = VP()
    x, velocity, prior_log_prob, exact = gaussian_case(sde, 100)
    ll = log_likelihood(velocity, x, (sde.s_min, 1.0), prior_log_prob, scheme=scheme, steps=steps)
    torch.testing.assert_close(ll.logp, exact, atol=2e-3, rtol=0)
    assert ll.nfe == {"rk4": 4, "heun": 2}[scheme] * steps and ll.z.shape == x.shape


@pytest.mark.parametrize("kw, message", [({"scheme": "midpoint"}, "unknown likelihood scheme"),
                                         ({"scheme": "euler", "steps": 0}, "steps must be >= 1")])
def test_bad_likelihood_scheme(kw, message):
    with pytest.raises(ConfigError, match=message):
        log_likelihood(lambda s, y: y, torch.zeros(2, 1), (0.0, 1.0), lambda z: z[:, 0], **kw)
