"""score-sde with the exact score of Gaussian data plugged in as the model."""

import math

import pytest
import torch
from torch import nn

from sbrun.data.distributions import Problem
from sbrun.data.gaussians import Gaussian
from sbrun.errors import ConfigError
from sbrun.methods.score_sde import ScoreSDE, oracle_eps
from sbrun.sde import VE, VP, Brownian, SubVP
from sbrun.sde.noising import gaussian_marginal, gaussian_score
from sbrun.solvers import configure, get_solver, time_grid

F64 = torch.float64
MEAN = torch.tensor([1.0, -0.5], dtype=F64)
COV = torch.tensor([[0.5, 0.2], [0.2, 0.3]], dtype=F64)
SDES = {
    "vp": lambda: VP(),
    "vp-cosine": lambda: VP(schedule="cosine"),
    "subvp": lambda: SubVP(),
    "ve": lambda: VE(0.01, 4.0, s_min=1e-4),
}
# solver -> (steps, tolerance on mean and covariance entries): ODE solvers move exact
# sample moments (discretisation error only); SDE solvers add path noise (SE ~ 0.01)
SOLVERS = {
    "euler": (200, 0.04), "heun": (50, 5e-3), "rk4": (20, 2e-3), "adaptive": (10, 1e-3),
    "ode": (20, 2e-3), "euler_maruyama": (200, 0.04), "heun_sde": (100, 0.04),
    "pc": (200, 0.05), "ancestral": (200, 0.05),
}



def oracle(sde, **kw):
    """(method, nets) for data N(MEAN, COV) with the exact score as the network."""
    method = ScoreSDE(**kw)
    method.bind(Problem("gauss", Gaussian(MEAN, COV, dtype=F64)), sde)
    return method, nn.ModuleDict({"net": oracle_eps(method.sde, gaussian_score(method.sde, MEAN,
                                                                                 COV))})


def start(sde, n, seed=0):
    """Draws of p_1 whitened so that their sample mean and covariance are exact."""
    m1, c1 = gaussian_marginal(sde, MEAN, COV, 1.0)
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=F64)
    z = z - z.mean(0)
    z = z @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(z.T))).T
    return m1 + z @ torch.linalg.cholesky(c1).T


@pytest.mark.parametrize("solver_name", list(SOLVERS))
@pytest.mark.parametrize("sde_name", list(SDES))
def test_every_solver_reaches_the_closed_form_marginal(sde_name, solver_name):
    sde = SDES[sde_name]()
    method, nets = oracle(sde)
    steps, tol = SOLVERS[solver_name]
    x = start(sde, 6000)
    res = method.transport(nets, x, get_solver(solver_name), time_grid(steps).double(),
                           generator=torch.Generator().manual_seed(1))
    m0, c0 = gaussian_marginal(sde, MEAN, COV, sde.s_min)
    torch.testing.assert_close(res.x.mean(0), m0, atol=tol, rtol=0)
    torch.testing.assert_close(torch.cov(res.x.T), c0, atol=tol, rtol=0)
    assert res.nfe > 0


def test_dsm_loss_at_the_true_score_is_its_closed_form():
    """E|eps* - z|^2 at fixed s = tr(alpha^2 S C_s^{-1}) (the irreducible DSM loss)."""
    sde = VP()
    method, nets = oracle(sde)
    g = torch.Generator().manual_seed(5)
    x0 = MEAN + torch.randn(20_000, 2, generator=g, dtype=F64) @ torch.linalg.cholesky(COV).T
    for s in (0.05, 0.3, 0.8):
        st = torch.full((x0.shape[0],), s, dtype=F64)
        loss = method.dsm_loss(nets, x0, st, torch.randn(x0.shape, generator=g, dtype=F64))
        a2 = math.exp(2 * sde.log_alpha(torch.tensor(s, dtype=F64)).item())
        _, c = gaussian_marginal(sde, MEAN, COV, s)
        expected = torch.trace(a2 * COV @ torch.linalg.inv(c)).item()
        assert abs(loss.mean().item() - expected) < 0.03 * expected + 0.01, (s, expected)


def test_probability_flow_is_invertible_and_the_gaussian_monge_map():
    """Encoder E (data -> prior) then decoder: identity; E is the OT map of the Gaussians."""
    sde = VP()
    method, nets = oracle(sde, sampler="ode")
    m0, c0 = gaussian_marginal(sde, MEAN, COV, sde.s_min)
    x = m0 + torch.randn(300, 2, generator=torch.Generator().manual_seed(6), dtype=F64) \
        @ torch.linalg.cholesky(c0).T
    solver, grid = configure(get_solver("ode"), scheme="dopri5", rtol=1e-8, atol=1e-8), \
        time_grid(4).double()
    z = method.transport(nets, x, solver, grid, direction="backward").x
    back = method.transport(nets, z, solver, grid).x
    torch.testing.assert_close(back, x, atol=1e-5, rtol=0)
    # Monge map between N(m0, C0) and N(m1, C1): A = C0^-1/2 (C0^1/2 C1 C0^1/2)^1/2 C0^-1/2
    m1, c1 = gaussian_marginal(sde, MEAN, COV, 1.0)

    def sqrtm(c, p=0.5):
        lam, q = torch.linalg.eigh(c)
        return (q * lam**p) @ q.T

    a = sqrtm(c0, -0.5) @ sqrtm(sqrtm(c0) @ c1 @ sqrtm(c0)) @ sqrtm(c0, -0.5)
    torch.testing.assert_close(z, m1 + (x - m0) @ a.T, atol=1e-5, rtol=0)


def test_nll_metric_is_the_exact_gaussian_nll():
    sde = VP()
    method, nets = oracle(sde, nll_points=300)
    m0, c0 = gaussian_marginal(sde, MEAN, COV, sde.s_min)
    x = m0 + torch.randn(300, 2, generator=torch.Generator().manual_seed(7), dtype=F64) \
        @ torch.linalg.cholesky(c0).T
    out = method.metrics(nets, x, None, x)
    expected = -torch.distributions.MultivariateNormal(m0, c0).log_prob(x).mean().item()
    assert abs(out["nll"] - expected) < 5e-3 and out["nll_nfe"] > 0  # the prior N(0, I) ~ p_1
    method.likelihood = False
    assert method.metrics(nets, x, None, x) == {}


def test_sampler_choice_follows_the_solver():
    sde = VP()
    method, nets = oracle(sde)
    assert method.diffusion(probability_flow=True) is None
    g = method.diffusion(probability_flow=False)(torch.tensor([0.0], dtype=F64))
    assert abs(g.item() - math.sqrt(20.0 * 0.999)) < 1e-6  # g(s=1) sqrt(|ds/dt|)
    x = start(sde, 10)
    # with an ODE solver "auto" is the probability flow: Euler == euler_maruyama without noise
    a = method.transport(nets, x, get_solver("euler"), time_grid(5).double())
    m_ode, _ = oracle(sde, sampler="ode")
    b = m_ode.transport(nets, x, get_solver("euler_maruyama"), time_grid(5).double())
    torch.testing.assert_close(a.x, b.x)


def test_prior_and_brownian_noising():
    method, _ = oracle(VE(0.01, 6.0))
    assert method.prior.std == 6.0
    method, _ = oracle(Brownian(2.0))
    assert method.sde.name == "brownian" and method.prior.std == 2.0


@pytest.mark.parametrize("kw, message", [
    ({"sampler": "langevin"}, "unknown method.sampler"),
    ({"weighting": "snr"}, "unknown method.weighting"),
    ({"divergence": "trace"}, "unknown method.divergence"),
    ({"noise_draws": 0}, "noise_draws must be >= 1"),
])
def test_bad_method_options(kw, message):
    with pytest.raises(ConfigError, match=message):
        ScoreSDE(**kw)


def test_likelihood_weighting_loss_is_normalised():
    sde = VP()
    method, nets = oracle(sde, weighting="likelihood")
    x0 = torch.zeros(4, 2, dtype=F64)
    s = torch.full((4,), 0.5, dtype=F64)
    z = torch.randn(4, 2, dtype=F64)
    plain, _ = oracle(sde)
    w = (sde.diffusion(s) ** 2 / sde.var(s)) / method._lik_norm
    torch.testing.assert_close(method.dsm_loss(nets, x0, s, z), plain.dsm_loss(nets, x0, s, z) * w)
