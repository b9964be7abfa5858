"""DDPM: the slides' mean and score parameterisations, the ELBO weights, ancestral sampling."""

import pytest
import torch
from gaussian_oracles import ChainOracle
from torch import nn

from sbrun.data.distributions import Problem
from sbrun.data.gaussians import Gaussian
from sbrun.errors import ConfigError
from sbrun.methods.base import Batch, Phase
from sbrun.methods.ddpm import DDPM, mean_from_eps, mean_from_score
from sbrun.models import MLP
from sbrun.sde import VE, VP
from sbrun.solvers import get_solver, time_grid

F64 = torch.float64
MEAN = torch.tensor([1.0, -0.5], dtype=F64)
COV = torch.tensor([[0.5, 0.2], [0.2, 0.3]], dtype=F64)
PROBLEM = Problem("gauss", Gaussian(MEAN, COV, dtype=F64))



def ddpm(chain_steps=100, **kw):
    method = DDPM(chain_steps=chain_steps, **kw)
    method.bind(PROBLEM, VP())
    return method


def random_net(seed=0):
    torch.manual_seed(seed)
    return nn.ModuleDict({"net": MLP((2,), hidden=32, depth=2).double()})


@pytest.mark.parametrize("steps", [100, 25])
def test_mean_and_score_parameterisations_give_the_same_sampler(steps):
    """mu_theta from eps and from s_theta = -eps / sqrt(1 - abar): identical chains (also
    respaced), and both equal the posterior q(x_j | x_i, x0_theta)."""
    method, nets = ddpm(chain_steps=100), random_net()
    x = torch.randn(500, 2, dtype=F64)
    grid = time_grid(steps).double()
    solver = get_solver("ancestral")
    a = solver(None, x, grid, kernel=method.kernel(nets, via="mu"),
               generator=torch.Generator().manual_seed(0))
    b = solver(None, x, grid, kernel=method.kernel(nets, via="score"),
               generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a.x, b.x)
    # one kernel step against the Gaussian posterior with the denoised x0
    c, i, j = method.chain, 100, 100 - 100 // steps
    eps = nets["net"](x, torch.full((500,), i / 100, dtype=F64))
    x0_hat = (x - (1 - c.alphas_bar[i]).sqrt() * eps) / c.alphas_bar[i].sqrt()
    law = method.kernel(nets)(torch.zeros(500, dtype=F64), torch.full((500,), 1 / steps,
                                                                      dtype=F64), x)
    q = c.posterior(j, i, x0_hat, x)
    torch.testing.assert_close(law.mean, q.mean)
    torch.testing.assert_close(law.std.expand(500, 1), q.std.expand(500, 1))


@pytest.mark.parametrize("steps", [100, 20])
def test_clipped_sampler_steps_to_the_posterior_of_the_clipped_x0(steps):
    """clip_x0: the kernel mean is q(x_j | x_i, clamp(x0_hat, -1, 1)), also respaced; the
    same as eq. 11 where x0_hat is inside [-1, 1]; auto clips on images only."""
    method, nets = ddpm(chain_steps=100, clip_x0=True), random_net()
    c, i, j = method.chain, 100, 100 - 100 // steps
    x = 3 * torch.randn(500, 2, dtype=F64)
    eps = nets["net"](x, torch.full((500,), i / 100, dtype=F64))
    x0_hat = (x - (1 - c.alphas_bar[i]).sqrt() * eps) / c.alphas_bar[i].sqrt()
    clipped = x0_hat.clamp(-1, 1)
    assert not torch.equal(clipped, x0_hat)  # the clip is active on some rows
    law = method.kernel(nets)(torch.zeros(500, dtype=F64),
                              torch.full((500,), 1 / steps, dtype=F64), x)
    torch.testing.assert_close(law.mean, c.posterior(j, i, clipped, x).mean)
    inside = (x0_hat.abs() <= 1).all(1)
    plain = ddpm(chain_steps=100, clip_x0=False).kernel(nets)(torch.zeros(500, dtype=F64),
                                                    torch.full((500,), 1 / steps, dtype=F64), x)
    torch.testing.assert_close(law.mean[inside], plain.mean[inside])
    assert ddpm(chain_steps=100).clip is False  # auto: 2D data is not clipped
    from sbrun.data.distributions import Empirical

    imgs = torch.rand(16, 1, 4, 4) * 2 - 1
    images = DDPM(chain_steps=100)
    images.bind(Problem("img", Empirical(imgs, imgs[:8])), VP())
    assert images.clip is True  # auto: (C, H, W) data in [-1, 1] is clipped
    with pytest.raises(ConfigError, match="clip_x0"):
        DDPM(clip_x0="sometimes")


def test_slide_formulas_agree():
    ab, alpha = torch.tensor(0.3, dtype=F64), torch.tensor(0.97, dtype=F64)
    x, eps = torch.randn(7, 2, dtype=F64), torch.randn(7, 2, dtype=F64)
    torch.testing.assert_close(mean_from_eps(x, eps, alpha, ab),
                               mean_from_score(x, -eps / (1 - ab).sqrt(), alpha))


def test_elbo_weight_turns_noise_error_into_the_slides_mean_error():
    """|mu_q - mu_theta|^2 / (2 sigma_i^2) = lambda_i |eps - eps_theta|^2 (Ho et al., eq. 12)."""
    method = ddpm(chain_steps=50)
    c = method.chain
    x0, eps, eps_hat = (torch.randn(3, 2, dtype=F64) for _ in range(3))
    for i in (1, 2, 25, 50):
        ab, alpha = c.alphas_bar[i], c.alphas[i - 1]
        xi = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        mu_q = c.posterior(i - 1, i, x0, xi).mean
        torch.testing.assert_close(mu_q, mean_from_eps(xi, eps, alpha, ab))
        mu = mean_from_eps(xi, eps_hat, alpha, ab)
        lhs = (mu_q - mu).pow(2).sum(1) / (2 * method.kernel_var[i])
        torch.testing.assert_close(lhs, method.elbo_weight[i] * (eps - eps_hat).pow(2).sum(1))


def test_mean_network_round_trips_through_the_noise():
    method, nets = ddpm(chain_steps=40, loss="mu"), random_net(1)
    x = torch.randn(64, 2, dtype=F64)
    law = method.kernel(nets)(torch.full((64,), 0.5, dtype=F64),
                              torch.full((64,), 0.5 + 1 / 40, dtype=F64), x)
    torch.testing.assert_close(law.mean, nets["net"](x, torch.full((64,), 0.5, dtype=F64)))


@pytest.mark.parametrize("loss", ["eps", "elbo", "mu"])
def test_losses_are_finite_and_train(loss):
    """Each loss is finite, differentiable, and falls under a few optimiser steps on the same
    draws (times and noise fixed by re-seeding the batch generator)."""
    method, nets = ddpm(chain_steps=100, loss=loss, noise_draws=2), random_net(2)
    x1 = PROBLEM.target.sample(128, torch.Generator().manual_seed(3))
    x0 = torch.randn(128, 2, dtype=F64, generator=torch.Generator().manual_seed(4))

    def fixed_loss():
        return method.loss(nets, Batch(x0, x1, torch.Generator().manual_seed(5)), Phase("train", 1))

    out = fixed_loss()
    assert torch.isfinite(out.loss) and out.loss.requires_grad and "loss" in out.stats
    opt = torch.optim.Adam(nets.parameters(), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        fixed_loss().loss.backward()
        opt.step()
    assert fixed_loss().loss.item() < 0.8 * out.loss.item()


def test_ancestral_sampling_with_the_exact_noise_reaches_the_data():
    method = ddpm(chain_steps=1000)
    nets = nn.ModuleDict({"net": ChainOracle(method.chain, MEAN, COV)})
    x = torch.randn(4000, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    res = method.transport(nets, x, get_solver("ancestral"), time_grid(1000).double(),
                           generator=torch.Generator().manual_seed(5))
    assert res.nfe == 1000
    torch.testing.assert_close(res.x.mean(0), MEAN, atol=0.04, rtol=0)
    torch.testing.assert_close(torch.cov(res.x.T), COV, atol=0.04, rtol=0)


def test_negative_elbo_matches_its_closed_form():
    """For Gaussian data and the exact noise every ELBO term is Gaussian in closed form:
    L_{i-1} = c_i^2 tr(Cov(x0 | x_i)) / (2 beta~_i), c_i = sqrt(abar_{i-1}) beta_i / (1 - abar_i),
    Cov(x0 | x_i) = (S^-1 + abar_i / (1 - abar_i) I)^-1; and -ELBO >= the data entropy."""
    method = ddpm(chain_steps=200)
    c, d = method.chain, 2
    nets = nn.ModuleDict({"net": ChainOracle(c, MEAN, COV)})
    x = PROBLEM.target.sample(2000, torch.Generator().manual_seed(6))
    bound = method.nll_elbo(nets, x, torch.Generator().manual_seed(7)).mean().item()

    def post_trace(i):
        snr = c.alphas_bar[i] / (1 - c.alphas_bar[i])
        return torch.trace(torch.linalg.inv(torch.linalg.inv(COV) + snr * torch.eye(2, dtype=F64)))

    ab_t = c.alphas_bar[-1]
    expected = 0.5 * (d * (1 - ab_t) + ab_t * (MEAN.pow(2).sum() + COV.trace()) - d
                      - d * torch.log(1 - ab_t))
    for i in range(2, c.steps + 1):
        coef = c.alphas_bar[i - 1].sqrt() * c.betas[i - 1] / (1 - c.alphas_bar[i])
        expected = expected + coef**2 * post_trace(i) / (2 * method.kernel_var[i])
    b1 = c.betas[0]
    expected = expected + post_trace(1) / (2 * b1) + 0.5 * d * torch.log(2 * torch.pi * b1)
    assert abs(bound - expected.item()) < 0.01 * abs(expected.item()), (bound, expected)
    entropy = -torch.distributions.MultivariateNormal(MEAN, COV).log_prob(x).mean().item()
    assert bound > entropy


def test_ddpm_needs_the_vp_sde():
    with pytest.raises(ConfigError, match="method=ddpm discretises the VP SDE"):
        DDPM().bind(PROBLEM, VE())
    with pytest.raises(ConfigError, match="unknown method.loss"):
        DDPM(loss="l1")
