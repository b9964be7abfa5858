"""eot: the static entropic plan made dynamic, checked against closed forms."""

import pytest
import torch
from torch import nn

from sbrun.data.problems import gaussian, toy
from sbrun.errors import ConfigError
from sbrun.methods.eot import EOT
from sbrun.sde import Brownian
from sbrun.solvers import get_solver, time_grid


def make(problem, sigma, **kw):
    m = EOT(**kw)
    m.bind(problem, Brownian(sigma))
    return m


@pytest.mark.parametrize("dim, sigma", [(2, 0.5), (2, 1.0), (16, 1.0)])
def test_plan_pairs_match_closed_form_gaussian_bridge(dim, sigma):
    """Pairs (x0, x1 ~ pi(.|x0)) have the joint law of the closed-form entropic plan."""
    from sbrun.couplings.gaussian import gaussian_eot_plan

    prob = gaussian(dim=dim, seed=3)
    m = make(prob, sigma, n_plan=1500)
    x0 = prob.source.sample(4000, torch.Generator().manual_seed(1)).double()
    res = m.transport(nn.ModuleDict(), x0, get_solver("euler"), time_grid(4).double(),
                      generator=torch.Generator().manual_seed(2))
    joint = torch.cat([x0, res.x.double()], 1)
    emp_cross = torch.cov(joint.T)[:dim, dim:]
    g0, g1 = prob.source, prob.target
    true = gaussian_eot_plan(g0, g1, sigma).cross
    rel = (emp_cross - true).norm() / true.norm()
    assert rel < (0.1 if dim == 2 else 0.25), rel


def test_conditional_on_target_atoms_matches_the_closed_form_gaussian_bridge():
    """x1 | x0 for held-out x0 (K draws each, as ``sbrun-transport --repeats K``) against the
    closed-form SB conditional: on n_atoms target draws it is near the exact sampler's score;
    on the plan's own 500 atoms (d = 8: a few dozen effective atoms per conditional) the
    conditional covariance comes out too small. The barycentric map is its mean."""
    from sbrun.couplings.gaussian import gaussian_sb_conditional
    from sbrun.metrics.gaussian import cbw2_uvp

    dim, k, sigma = 8, 256, 1.0
    prob = gaussian(dim=dim, seed=1)
    g0, g1 = prob.source, prob.target
    x0 = prob.source.heldout(16, 3).double()
    mu, cov = gaussian_sb_conditional(g0, g1, sigma, x0)
    z = torch.randn(16, k, dim, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    floor = cbw2_uvp(x0, mu[:, None] + z @ torch.linalg.cholesky(cov).T, g0, g1, sigma)
    score, mean_err = {}, {}
    for n_atoms in (None, 10_000):
        m = make(prob, sigma, n_plan=500, n_atoms=n_atoms)
        res = m.transport(nn.ModuleDict(), x0.repeat_interleave(k, 0), get_solver("euler"),
                          time_grid(2).double(), generator=torch.Generator().manual_seed(0))
        score[n_atoms] = cbw2_uvp(x0, res.x.reshape(16, k, dim), g0, g1, sigma)
        mb = make(prob, sigma, n_plan=500, n_atoms=n_atoms, map="barycentric")
        xb = mb.transport(nn.ModuleDict(), x0, get_solver("euler"), time_grid(2).double()).x
        mean_err[n_atoms] = float((xb - mu).norm(dim=1).mean() / g1.cov.trace().sqrt())
    assert floor < score[10_000] < floor + 1.0 and score[None] > 2 * score[10_000], (floor, score)
    assert mean_err[10_000] < 0.08 and mean_err[None] > mean_err[10_000], mean_err


def test_bridge_paths_have_brownian_bridge_marginals():
    prob = toy("moons", "gaussian")
    sigma = 0.5
    m = make(prob, sigma, n_plan=300, n_atoms=4000)
    x0 = prob.source.sample(20_000, torch.Generator().manual_seed(0))
    res = m.transport(nn.ModuleDict(), x0, get_solver("euler"), time_grid(10),
                      generator=torch.Generator().manual_seed(1), keep=20_000)
    x1 = res.x
    for k, t in ((3, 0.3), (5, 0.5), (8, 0.8)):
        resid = res.path[:, k] - ((1 - t) * x0 + t * x1)
        assert abs(resid.mean().item()) < 0.01
        assert abs(resid.var().item() - sigma**2 * t * (1 - t)) < 0.03 * sigma**2


def test_barycentric_map_is_the_conditional_mean_and_straight():
    prob = toy("moons", "gaussian")
    m = make(prob, 0.3, n_plan=200, n_atoms=None, map="barycentric")  # on the plan's atoms
    m.solve()
    x0 = m.x0s[:50].float()
    res = m.transport(nn.ModuleDict(), x0, get_solver("euler"), time_grid(4), keep=50)
    plan = m.solution.plan
    cond_mean = (plan[:50] / plan[:50].sum(1, keepdim=True)) @ m.x1s
    torch.testing.assert_close(res.x.double(), cond_mean, atol=2e-3, rtol=0)
    mid = res.path[:, 2]
    torch.testing.assert_close(mid, 0.5 * (x0 + res.x), atol=1e-5, rtol=0)


def test_emd_limit_gives_a_permutation():
    prob = toy("moons", "gaussian")
    m = make(prob, 0.1, n_plan=50, solver="emd")
    m.solve()
    p = m.solution.plan * 50
    assert torch.allclose(p.sum(1), torch.ones(50, dtype=p.dtype))
    assert ((p > 0.5).sum(1) == 1).all()


def test_bad_options():
    with pytest.raises(ConfigError, match="map"):
        EOT(map="nope")
    with pytest.raises(ConfigError, match="solver"):
        EOT(solver="nope")
    with pytest.raises(ConfigError, match="n_atoms"):
        EOT(n_plan=100, n_atoms=50)
    from sbrun.data.problems import toy as _toy
    from sbrun.sde import VP

    with pytest.raises(ConfigError, match="Brownian"):
        EOT().bind(_toy("moons"), VP())


def test_plan_spread_runs_from_permutation_to_independent_and_slide_units():
    prob = toy("moons", "gaussian")
    spread = {}
    for solver, sigma in (("emd", 0.1), ("sinkhorn_log", 0.05), ("sinkhorn_log", 30.0)):
        m = make(prob, sigma, n_plan=60, solver=solver)
        spread[(solver, sigma)] = m.metrics(None, None, None, None)["plan_spread"]
    assert abs(spread[("emd", 0.1)]) < 1e-9                       # a permutation: H = log n
    assert 0.98 < spread[("sinkhorn_log", 30.0)] <= 1.0 + 1e-9     # nearly the product a b^T
    assert 0.0 < spread[("sinkhorn_log", 0.05)] < spread[("sinkhorn_log", 30.0)]
    m = make(prob, 0.5, slide_units="entropic")  # Fig. 9: s = 2 sigma^2 on |x-y|^2
    assert m._sigma_label() == ", slide Fig. 9: σ=0.5\n≙ runner σ=0.5 (ε=σ²=0.25)"
    assert make(prob, 0.5, slide_units="kl")._sigma_label().startswith(", slide Fig. 5: σ=0.25\n")
    assert make(prob, 0.5, solver="emd")._sigma_label() == ""
    with pytest.raises(ConfigError, match="slide_units"):
        EOT(slide_units="fig9")
    with pytest.raises(ConfigError, match="convergence_sigmas"):
        EOT(convergence_sigmas=[0.5, 0.0])


def test_sinkhorn_trace_reaches_pots_plan_geometrically():
    import ot

    from sbrun.couplings.convergence import geometric_rate, sinkhorn_trace

    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(40, 2, generator=g).double(), torch.randn(30, 2, generator=g).double() + 1
    rates = []
    for sigma in (1.0, 0.5):
        errors, plan = sinkhorn_trace(x0, x1, sigma, iters=2000)
        assert errors[-1] < 1e-13 and errors[0] > 1e-3
        M = torch.cdist(x0, x1) ** 2  # POT: reg = 2 sigma^2 on squared distances
        ref = ot.sinkhorn(torch.full((40,), 1 / 40).double(), torch.full((30,), 1 / 30).double(), M,
                          2 * sigma**2, stopThr=1e-14, numItermax=20000, method="sinkhorn_log")
        torch.testing.assert_close(plan, ref, atol=1e-10, rtol=1e-6)
        rates.append(geometric_rate(errors))
    assert 0 < rates[0] < rates[1] < 1  # smaller eps: slower geometric convergence
    assert geometric_rate([1.0, 0.5, 0.25, 0.125, 0.0625]) == pytest.approx(0.5)
