"""The entropic-OT benchmark: its conditional law against its definition, and the oracle's
self-check (the true conditional sampler scores ~0, wrong ones score large)."""

import math

import pytest
import torch

from sbrun.data.eot_benchmark import eot_benchmark
from sbrun.errors import ConfigError
from sbrun.metrics.truth import scorer_for

F64 = torch.float64


@pytest.mark.parametrize("eps", [0.1, 1.0, 10.0])
def test_conditional_law_is_kernel_times_b(eps):
    """``pi(y | x) ∝ N(y | x, eps I) b(y)``: importance weights on draws of ``b`` (by hand)
    against the plan's closed-form moments and its sampler."""
    prob = eot_benchmark(dim=3, eps=eps, seed=1)
    plan = prob.truth.plan
    g = torch.Generator().manual_seed(0)
    k = torch.multinomial(plan.weights, 400_000, replacement=True, generator=g)
    z = torch.randn(400_000, 3, generator=g, dtype=F64)
    y = plan.means[k] + torch.einsum("nde,ne->nd", torch.linalg.cholesky(plan.covs)[k], z)
    x = torch.tensor([[0.5, -1.0, 0.3]], dtype=F64)
    w = torch.softmax(-(y - x).pow(2).sum(1) / (2 * eps), 0)
    mean_is = (w[:, None] * y).sum(0)
    cov_is = (w[:, None, None] * (y - mean_is)[:, :, None] * (y - mean_is)[:, None, :]).sum(0)
    mean, cov = plan.moments(x)
    torch.testing.assert_close(mean[0], mean_is, atol=0.03, rtol=0)
    torch.testing.assert_close(cov[0], cov_is, atol=0.03, rtol=0)
    s = plan.sample(x.repeat(200_000, 1), g)
    torch.testing.assert_close(s.mean(0), mean[0], atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(s.T), cov[0], atol=0.03, rtol=0)


def test_target_is_the_plans_second_marginal():
    prob = eot_benchmark(dim=4, eps=1.0)
    y = prob.target.sample(100_000, torch.Generator().manual_seed(2)).double()
    assert float(y.var(0).sum()) == pytest.approx(scorer_for(prob.truth).total_var(), rel=0.02)


def test_oracle_true_sampler_scores_near_zero_wrong_ones_large():
    prob = eot_benchmark(dim=2, eps=1.0)
    oracle, plan = scorer_for(prob.truth), prob.truth.plan
    g = torch.Generator().manual_seed(3)
    x0 = prob.source.sample(100, g).double()
    true = plan.sample(x0.repeat_interleave(1000, 0), g).reshape(100, 1000, 2)
    assert oracle.cbw2_uvp(x0, true) < 0.5
    wrong_eps = eot_benchmark(dim=2, eps=0.3).truth.plan  # same b, another eps
    other = wrong_eps.sample(x0.repeat_interleave(1000, 0), g).reshape(100, 1000, 2)
    assert oracle.cbw2_uvp(x0, other) > 10
    indep = prob.target.sample(100_000, g).double().reshape(100, 1000, 2)
    assert oracle.cbw2_uvp(x0, indep) > 20
    assert oracle.cbw2_uvp(x0, plan.moments(x0)[0]) > 20  # the mean map has no spread


def test_eps_must_agree_with_the_reference():
    with pytest.raises(ConfigError, match="sde.sigma=0.316"):
        eot_benchmark(dim=2, eps=0.1, reference_sigma=1.0)
    assert eot_benchmark(dim=2, reference_sigma=math.sqrt(0.1)).truth.plan.eps == pytest.approx(0.1)
    with pytest.raises(ConfigError):
        eot_benchmark(dim=2)


def test_repeated_draws_match_the_conditional_and_the_floor_falls_as_one_over_k():
    """``sample_repeated`` (weights and means once per point) has the plan's moments, and
    the oracle's floor (the true sampler's score) shrinks ~10x from k = 200 to k = 2000."""
    prob = eot_benchmark(dim=3, eps=1.0, seed=1)
    oracle, plan = scorer_for(prob.truth), prob.truth.plan
    x = torch.tensor([[0.5, -1.0, 0.3], [-0.2, 0.4, 1.1]], dtype=F64)
    s = plan.sample_repeated(x, 200_000, torch.Generator().manual_seed(4))
    mean, cov = plan.moments(x)
    for i in range(2):
        torch.testing.assert_close(s[i].mean(0), mean[i], atol=0.02, rtol=0)
        torch.testing.assert_close(torch.cov(s[i].T), cov[i], atol=0.03, rtol=0)
    x0 = prob.source.sample(50, torch.Generator().manual_seed(5)).double()
    coarse, fine = oracle.floor(x0, 200), oracle.floor(x0, 2000)
    assert 5 < coarse / fine < 20


def test_streamed_score_equals_the_score_of_all_draws():
    """``cbw2_uvp_of`` reduces chunks of points to moments: the same number as all draws."""
    from sbrun.metrics.gaussian import streamed_moments

    prob = eot_benchmark(dim=2, eps=1.0)
    oracle, plan = scorer_for(prob.truth), prob.truth.plan
    x0 = prob.source.sample(7, torch.Generator().manual_seed(6)).double()
    draws = plan.sample_repeated(x0, 300, torch.Generator().manual_seed(7))

    def pick(x, k):  # the draws of the asked points
        assert k == 300
        return draws[torch.cdist(x, x0).argmin(1)]

    mu, cov = streamed_moments(pick, x0, 300, rows=600)  # 2 points at a time
    assert mu.shape == (7, 2) and cov.shape == (7, 2, 2)
    total = oracle.cbw2_uvp(x0, draws)
    assert oracle.cbw2_uvp_of(pick, x0, 300) == pytest.approx(total, rel=1e-9)
    assert oracle.cbw2_uvp(x0, draws[:, :10]) > total  # fewer draws: a higher floor
