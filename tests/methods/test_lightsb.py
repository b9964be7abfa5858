"""LightSB: the closed forms of its Gaussian-mixture potential against Monte Carlo, and the
closed-form Gaussian bridge recovered by one full-covariance component."""

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from sbrun.data.problems import gaussian
from sbrun.errors import ConfigError
from sbrun.methods.lightsb import LightSB
from sbrun.models.gmm_potential import GaussianMixturePotential
from sbrun.sde import Brownian
from sbrun.solvers import get_solver, time_grid

F64 = torch.float64
EPS = 0.5


def random_potential(cov: str, seed: int = 0, k: int = 3, d: int = 2) -> GaussianMixturePotential:
    g = torch.Generator().manual_seed(seed)
    pot = GaussianMixturePotential((d,), k, cov, EPS).double()
    with torch.no_grad():
        pot.alpha_logit.copy_(EPS * torch.randn(k, generator=g, dtype=F64))
        pot.r.copy_(torch.randn(k, d, generator=g, dtype=F64))
        if cov == "diag":
            pot.log_s.copy_(0.5 * torch.randn(k, d, generator=g, dtype=F64))
        else:
            pot.L_raw.copy_(0.4 * torch.randn(k, d, d, generator=g, dtype=F64))
    return pot


def draws_of_v(pot: GaussianMixturePotential, n: int, seed: int = 1) -> torch.Tensor:
    """``n`` draws of the normalised mixture ``v / |v|`` (by hand: components, then Gaussians)."""
    g = torch.Generator().manual_seed(seed)
    k = torch.multinomial(torch.softmax(pot.log_alpha, 0), n, replacement=True, generator=g)
    z = torch.randn(n, pot.dim, generator=g, dtype=F64)
    L = pot.chol().detach()
    return pot.r.detach()[k] + math.sqrt(EPS) * torch.einsum("nde,ne->nd", L[k], z)


def weighted_moments(y, logw):
    w = torch.softmax(logw, 0)
    mean = (w[:, None] * y).sum(0)
    dev = y - mean
    return mean, (w[:, None, None] * dev[:, :, None] * dev[:, None, :]).sum(0)


@pytest.mark.parametrize("cov", ["diag", "full"])
def test_log_c_matches_monte_carlo(cov):
    """``c(x) = ∫ exp(<x, y>/eps) v(y) dy = |v| E_{y ~ v/|v|} exp(<x, y>/eps)``."""
    pot = random_potential(cov)
    y = draws_of_v(pot, 400_000)
    x = torch.tensor([[0.3, -0.2], [-0.1, 0.25]], dtype=F64)
    mc = torch.logsumexp(x @ y.T / EPS, 1) - math.log(y.shape[0]) + torch.logsumexp(pot.log_alpha, 0)
    torch.testing.assert_close(pot.log_c(x).detach(), mc.detach(), atol=0.02, rtol=0)


@pytest.mark.parametrize("cov", ["diag", "full"])
def test_conditional_sampler_matches_monte_carlo(cov):
    """``pi(y | x) ∝ exp(<x, y>/eps) v(y)``: importance-weighted draws of ``v`` against the
    exact mixture sampler (mean and covariance)."""
    pot = random_potential(cov, seed=2)
    y = draws_of_v(pot, 400_000, seed=3)
    x = torch.tensor([[0.4, -0.3]], dtype=F64)
    mean_mc, cov_mc = weighted_moments(y, (y @ x[0]) / EPS)
    s = pot.sample(x.repeat(200_000, 1), 0.0, torch.Generator().manual_seed(4))
    torch.testing.assert_close(s.mean(0), mean_mc, atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(s.T), cov_mc, atol=0.04, rtol=0)


@pytest.mark.parametrize("cov", ["diag", "full"])
def test_drift_is_the_posterior_mean_of_the_bridge(cov):
    """``E[X_1 | X_t = x]``: ``p(y | x_t) ∝ N(y | x_t, eps (1 - t)) v(y) exp(|y|^2 / 2 eps)``
    (the h-transform of the reference), by importance weights on draws of ``v``."""
    pot = random_potential(cov, seed=5)
    y = draws_of_v(pot, 400_000, seed=6)
    x, t = torch.tensor([[0.2, 0.5]], dtype=F64), 0.6
    logw = y.pow(2).sum(1) / (2 * EPS) - (y - x).pow(2).sum(1) / (2 * EPS * (1 - t))
    mean_mc, _ = weighted_moments(y, logw)
    drift = pot.drift(torch.tensor([t], dtype=F64), x)[0]
    torch.testing.assert_close(drift, (mean_mc - x[0]) / (1 - t), atol=0.05, rtol=0)


def test_sde_sampler_reaches_the_exact_conditional():
    """The closed-form drift through Euler–Maruyama lands on ``pi(. | x)``."""
    prob = gaussian(dim=2, seed=1)
    m = LightSB(n_components=3, cov="full", sampler="sde")
    m.bind(prob, Brownian(math.sqrt(EPS)))
    nets = nn.ModuleDict({"potential": random_potential("full", seed=7).float()})
    x = torch.tensor([[0.3, -0.4]]).repeat(4000, 1)
    res = m.transport(nets, x, get_solver("euler_maruyama"), time_grid(200),
                      generator=torch.Generator().manual_seed(8))
    exact = nets["potential"].sample(x, 0.0, torch.Generator().manual_seed(9))
    torch.testing.assert_close(res.x.mean(0), exact.mean(0), atol=0.08, rtol=0)
    torch.testing.assert_close(torch.cov(res.x.T), torch.cov(exact.T), atol=0.1, rtol=0)


def test_one_full_component_recovers_the_gaussian_bridge():
    """K = 1, full S: the loss's minimiser is the closed-form SB between Gaussians
    (conditional mean map and covariance of ``gaussian_sb_conditional``)."""
    from sbrun.couplings.gaussian import gaussian_sb_conditional

    sigma = 0.8
    prob = gaussian(dim=2, seed=4)
    m = LightSB(n_components=1, cov="full", init="samples")  # the loss, not the init, gets there
    m.bind(prob, Brownian(sigma))
    torch.manual_seed(0)
    pot = GaussianMixturePotential((2,), **m.model_kwargs("potential"))
    opt = torch.optim.Adam(pot.parameters(), lr=2e-2)
    g = torch.Generator().manual_seed(1)
    for i in range(1500):
        for grp in opt.param_groups:
            grp["lr"] = 2e-2 * (1 - i / 1500) + 1e-4
        loss = pot(prob.source.sample(1024, g), prob.target.sample(1024, g)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    g0, g1 = prob.source, prob.target
    x = prob.source.sample(5, g).double()
    mean, cov = gaussian_sb_conditional(g0, g1, sigma, x)
    _, means, var, U = pot.double().posterior(x)
    torch.testing.assert_close(means[:, 0], mean, atol=0.06, rtol=0)
    learned = U[0] @ torch.diag(var[0, 0]) @ U[0].T
    torch.testing.assert_close(learned, cov, atol=0.04, rtol=0)


def test_bad_options_are_refused():
    from sbrun.sde.vp import VP

    with pytest.raises(ConfigError):
        LightSB(cov="dense")
    assert LightSB(n_components=1).cov == "full" and LightSB().cov == "diag"  # cov=auto
    with pytest.raises(ConfigError):
        LightSB(sampler="ode")
    # a knob the chosen start ignores is refused (init=auto: gaussian for one component)
    with pytest.raises(ConfigError, match="init_spread applies to method.init=gaussian"):
        LightSB(n_components=5, init_spread=1.0)
    with pytest.raises(ConfigError, match="init_log_s applies to method.init=samples"):
        LightSB(n_components=1, init_log_s=-2.0)
    assert LightSB(n_components=5, init="gaussian", init_spread=1.0).init_spread == 1.0
    assert LightSB(n_components=1).init == "gaussian" and LightSB().init == "samples"
    with pytest.raises(ConfigError, match="sde=brownian"):
        LightSB().bind(gaussian(dim=2), VP())
    from sbrun.solvers import check_solver

    m = LightSB(sampler="sde")
    m.bind(gaussian(dim=2), Brownian(1.0))
    with pytest.raises(ConfigError):
        check_solver(get_solver("euler"), m)


def test_cli_benchmark_run_reports_cbw2_and_transports_with_repeats(cli):
    """Through the shared pipeline: the oracle's score, then ``sbrun-transport --repeats``."""
    import json

    import numpy as np

    from sbrun.transport import transport_points

    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}  # this checkout's sbrun
    proc, run_dir = cli("method=lightsb", "data=eot_benchmark", "data.dim=3", "sde.sigma=0.5",
                        "data.oracle_points=20", "data.oracle_repeats=50", "debug=smoke",
                        "method.n_components=4", "trainer.steps=30", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["cbw2_uvp"] >= 0 and metrics["cbw2_uvp_floor"] >= 0
    out = transport_points(run_dir, np.zeros((5, 3), np.float32), repeats=7)
    assert out["x1"].shape == (5, 7, 3) and out["x1"].std(1).min() > 0  # x1 | x0 is random
    bad, _ = cli("method=lightsb", "data=eot_benchmark", "data.eps=0.1", "debug=smoke", env=env)
    assert bad.returncode != 0 and "sde.sigma=0.316" in bad.stderr


def benchmark_potential(plan) -> GaussianMixturePotential:
    """The benchmark's own adjusted potential in LightSB's form: ``v(y) ∝ b(y)
    exp(-|y|^2 / 2 eps) = sum_n alpha_n N(y | P_n Sigma_n^-1 mu_n, P_n)`` with ``eps S_n = P_n``
    and ``alpha_n ∝ p_n N(mu_n | 0, Sigma_n + eps I)`` (product of two Gaussian densities)."""
    n, d = plan.means.shape
    pot = GaussianMixturePotential((d,), n, "full", plan.eps).double()
    kernel = torch.distributions.MultivariateNormal(torch.zeros(d, dtype=F64), plan.kernel_cov)
    L = torch.linalg.cholesky(plan.P / plan.eps)
    with torch.no_grad():
        pot.alpha_logit.copy_(plan.eps * (plan.weights.log() + kernel.log_prob(plan.means)))
        pot.r.copy_(plan.bias)
        pot.L_raw.copy_(torch.tril(L, -1) + torch.diag_embed(L.diagonal(dim1=-2, dim2=-1).log()))
    return pot


@pytest.mark.parametrize("eps", [0.1, 1.0])
def test_benchmark_potential_scores_at_the_floor_and_a_wrong_one_does_not(eps):
    """The benchmark's potential, sampled by LightSB's exact sampler, scores the oracle's floor
    (same points and draws); the same mixture with every ``r_n`` moved by 0.2 does not."""
    from sbrun.data.eot_benchmark import eot_benchmark
    from sbrun.metrics.truth import scorer_for

    prob = eot_benchmark(dim=4, eps=eps)
    oracle, pot = scorer_for(prob.truth), benchmark_potential(prob.truth.plan)
    x0 = prob.source.sample(40, torch.Generator().manual_seed(1)).double()
    g = torch.Generator().manual_seed(2)

    def draw(x, k):
        return pot.sample(x.repeat_interleave(k, 0), 0.0, g).reshape(x.shape[0], k, -1)

    floor, score = oracle.floor(x0, 2000), oracle.cbw2_uvp_of(draw, x0, 2000)
    assert score < 1.5 * floor + 0.01
    with torch.no_grad():
        pot.r += 0.2
    assert oracle.cbw2_uvp_of(draw, x0, 2000) > 5 * floor + 0.2


@pytest.mark.parametrize("cov", ["diag", "full"])
def test_distinct_rows_sample_like_repeated_ones(cov):
    """Runs of equal rows share their weights and means (``_sample_rows``); interleaved rows
    (no runs) draw the same conditionals."""
    pot = random_potential(cov, seed=11)
    a, b = torch.tensor([0.3, -0.4], dtype=F64), torch.tensor([-0.5, 0.2], dtype=F64)
    mixed = pot.sample(torch.stack([a, b]).repeat(60_000, 1), 0.0, torch.Generator().manual_seed(1))
    runs = pot.sample(torch.stack([a, b]).repeat_interleave(60_000, 0), 0.0,
                      torch.Generator().manual_seed(2))
    for i in range(2):
        torch.testing.assert_close(mixed[i::2].mean(0), runs[i * 60_000:(i + 1) * 60_000].mean(0),
                                   atol=0.03, rtol=0)
        torch.testing.assert_close(torch.cov(mixed[i::2].T),
                                   torch.cov(runs[i * 60_000:(i + 1) * 60_000].T), atol=0.04, rtol=0)


def test_weights_are_stored_in_the_exponents_units_and_old_checkpoints_load():
    """``alpha_logit = eps log alpha``; a state dict with the former ``log_alpha`` loads."""
    pot = random_potential("diag", seed=12)
    torch.testing.assert_close(pot.log_alpha, pot.alpha_logit / EPS)
    old = {k: v for k, v in pot.state_dict().items() if k != "alpha_logit"}
    old["log_alpha"] = pot.log_alpha.detach().clone()
    fresh = GaussianMixturePotential((2,), 3, "diag", EPS).double()
    fresh.load_state_dict(old)
    torch.testing.assert_close(fresh.alpha_logit, pot.alpha_logit)


def test_gaussian_init_is_the_closed_form_bridge_of_the_moment_fits():
    """``init=gaussian``, K = 1, full: before any step the potential's conditional is the
    closed-form SB conditional (up to the moments of 50 000 draws); K = 3: every component
    starts with that ``S``, the ``r_k`` apart."""
    from sbrun.couplings.gaussian import gaussian_sb_conditional
    from sbrun.methods.lightsb import gaussian_bridge_init

    sigma = 0.7
    prob = gaussian(dim=3, seed=2)
    m = LightSB(n_components=1, cov="full", init_draws=50_000)
    m.bind(prob, Brownian(sigma))
    torch.manual_seed(0)
    pot = GaussianMixturePotential((3,), **m.model_kwargs("potential")).double()
    x = prob.source.sample(4, torch.Generator().manual_seed(1)).double()
    mean, cov = gaussian_sb_conditional(prob.source, prob.target, sigma, x)
    _, means, var, U = pot.posterior(x)
    torch.testing.assert_close(means[:, 0], mean, atol=0.05, rtol=0)
    torch.testing.assert_close(U[0] @ torch.diag(var[0, 0]) @ U[0].T, cov, atol=0.03, rtol=0)
    x0, x1 = prob.source.sample(20_000).double(), prob.target.sample(20_000).double()
    r1, S1 = gaussian_bridge_init(x0, x1, sigma**2, 1)
    r3, S3 = gaussian_bridge_init(x0, x1, sigma**2, 3)
    torch.testing.assert_close(S3, S1)  # one shared S_k; the r_k spread over the target
    assert r3.shape == (3, 3) and torch.cdist(r3, r3).triu(1).max() > 0.1
