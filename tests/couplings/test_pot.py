"""Discrete couplings: marginals, dual formula, limits, conventions against POT."""

import warnings

import ot
import pytest
import torch
from torch.testing import assert_close

from sbrun.couplings import (
    barycentric_map,
    half_sq_dists,
    minibatch_pair,
    sample_pairs,
    solve_coupling,
)
from sbrun.errors import ConfigError

F64 = torch.float64


def _clouds(n, m, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g, dtype=F64), torch.rand(m, d, generator=g, dtype=F64)


def _weights(n, seed):
    w = torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=F64) + 0.1
    return w / w.sum()


def test_cost_matrix_is_half_squared_distance():
    x, y = _clouds(7, 5, d=3)
    assert_close(half_sq_dists(x + 100.0, y + 100.0), 0.5 * torch.cdist(x, y) ** 2)


@pytest.mark.parametrize("method", ["sinkhorn_log", "sinkhorn"])
def test_entropic_marginals_and_dual_formula(method):
    x, y = _clouds(300, 250)
    a, b = _weights(300, 1), _weights(250, 2)
    sigma = 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converged: no warning
        r = solve_coupling(x, y, method=method, sigma=sigma, a=a, b=b, tol=1e-6)
    assert r.converged and r.err <= 1e-6
    assert_close(r.plan.sum(1), a, atol=1e-6, rtol=0)
    assert_close(r.plan.sum(0), b, atol=1e-6, rtol=0)
    assert bool((r.plan >= 0).all())
    f, g = r.potentials
    c = half_sq_dists(x, y)
    dual = a[:, None] * b[None, :] * torch.exp((f[:, None] + g[None, :] - c) / sigma**2)
    assert_close(dual, r.plan, atol=1e-12, rtol=1e-9)
    assert r.cost == pytest.approx(float((r.plan * c).sum()), rel=1e-12)


def test_convention_matches_pot_reg_two_sigma_squared():
    x, y = _clouds(60, 40, d=3)
    sigma = 0.3
    ours = solve_coupling(x, y, method="sinkhorn_log", sigma=sigma, tol=1e-10).plan
    a, b = torch.full((60,), 1 / 60, dtype=F64), torch.full((40,), 1 / 40, dtype=F64)
    M = torch.cdist(x, y) ** 2
    ref = ot.sinkhorn(a, b, M, 2 * sigma**2, method="sinkhorn_log", stopThr=1e-12,
                      numItermax=10_000)
    assert_close(ours, ref, atol=1e-9, rtol=1e-6)
    wrong = ot.sinkhorn(a, b, M, sigma**2, method="sinkhorn_log", stopThr=1e-12)
    assert float((ours - wrong).abs().sum()) > 0.1  # the convention is not reg = sigma^2


def test_tiny_sigma_on_1000_points_is_finite_and_feasible():
    x, y = _clouds(1000, 1000, seed=3)
    r = solve_coupling(x, y, method="sinkhorn_log", sigma=0.0005, tol=1e-5)
    assert bool(torch.isfinite(r.plan).all()) and float(r.plan.max()) > 0
    assert r.converged and r.err <= 1e-5
    assert_close(r.plan.sum(1), torch.full((1000,), 1e-3, dtype=F64), atol=1e-5, rtol=0)
    assert_close(r.plan.sum(0), torch.full((1000,), 1e-3, dtype=F64), atol=1e-8, rtol=0)
    # eps = 2.5e-7: almost the exact OT cost
    exact = solve_coupling(x, y, method="exact")
    assert abs(r.cost - exact.cost) < 1e-3 * exact.cost


def test_pot_kernel_sinkhorn_underflows_and_warns():
    x, y = _clouds(100, 100)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        r = solve_coupling(x, y, method="sinkhorn", sigma=0.002)
    assert not r.converged


def test_small_sigma_converges_to_exact_plan():
    x, y = _clouds(20, 20, seed=1)
    exact = solve_coupling(x, y, method="exact")
    gaps = []
    for sigma in (0.1, 0.03, 0.01):
        r = solve_coupling(x, y, method="sinkhorn_log", sigma=sigma)
        gaps.append(float((r.plan - exact.plan).abs().sum()))
        assert r.cost >= exact.cost - 1e-12
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-2
    assert r.cost == pytest.approx(exact.cost, abs=1e-5)


def test_exact_plan_and_kantorovich_potentials():
    x, y = _clouds(30, 20, d=3)
    a, b = _weights(30, 4), _weights(20, 5)
    r = solve_coupling(x, y, method="exact", a=a, b=b)
    c = half_sq_dists(x, y)
    assert r.converged and r.err < 1e-12
    assert r.cost == pytest.approx(0.5 * float(ot.emd2(a, b, 2 * c)), rel=1e-10)
    f, g = r.potentials
    slack = c - f[:, None] - g[None, :]
    assert float(slack.min()) > -1e-10  # dual feasible
    assert float((slack * r.plan).sum()) < 1e-12  # complementary slackness
    assert float(f @ a + g @ b) == pytest.approx(r.cost, rel=1e-9)  # no duality gap


def test_independent_plan_and_trailing_dims_flattened():
    x, y = _clouds(12, 8, d=6)
    r = solve_coupling(x.reshape(12, 2, 3), y.reshape(8, 2, 3), method="independent")
    assert_close(r.plan, torch.full((12, 8), 1 / 96, dtype=F64))
    assert r.cost == pytest.approx(float(half_sq_dists(x, y).mean()))
    flat = solve_coupling(x, y, method="sinkhorn_log", sigma=0.3).plan
    shaped = solve_coupling(x.reshape(12, 2, 3), y.reshape(8, 2, 3), method="sinkhorn_log",
                            sigma=0.3).plan
    assert_close(shaped, flat)


def test_not_converged_warns_unless_disabled():
    x, y = _clouds(200, 200)
    with pytest.warns(RuntimeWarning, match="marginal error"):
        r = solve_coupling(x, y, method="sinkhorn_log", sigma=0.01, max_iter=3)
    assert not r.converged and r.err > 1e-6 and r.n_iter == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        solve_coupling(x, y, method="sinkhorn_log", sigma=0.01, max_iter=3, warn=False)


def test_float32_input_returns_float32_plan():
    x, y = _clouds(50, 50)
    r = solve_coupling(x.float(), y.float(), method="sinkhorn_log", sigma=0.1)
    assert r.plan.dtype == torch.float32 and r.converged


@pytest.mark.parametrize("kwargs", [
    {"method": "nope"},
    {"method": "sinkhorn_log"},  # sigma missing
    {"method": "sinkhorn_log", "sigma": 0.0},
    {"method": "exact", "a": torch.ones(3)},
    {"method": "exact", "a": -torch.ones(10)},
])
def test_bad_input_raises_config_error(kwargs):
    x, y = _clouds(10, 10)
    with pytest.raises(ConfigError):
        solve_coupling(x, y, **kwargs)
    with pytest.raises(ConfigError):
        solve_coupling(x, torch.rand(10, 3), method="exact")


def test_sample_pairs_follow_the_plan():
    plan = torch.tensor([[0.1, 0.0, 0.2, 0.1], [0.0, 0.3, 0.0, 0.05], [0.15, 0.0, 0.0, 0.1]])
    i, j = sample_pairs(plan, 200_000, torch.Generator().manual_seed(0))
    freq = torch.zeros(3, 4).index_put_((i, j), torch.ones(len(i)), accumulate=True) / len(i)
    assert_close(freq, plan, atol=4e-3, rtol=0)
    assert float(freq[plan == 0].sum()) == 0.0
    first = sample_pairs(plan, 50, torch.Generator().manual_seed(5))
    again = sample_pairs(plan, 50, torch.Generator().manual_seed(5))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    iu, ju = sample_pairs(plan, 7, torch.Generator().manual_seed(1), replace=False)
    assert len(set(zip(iu.tolist(), ju.tolist()))) == 7  # all non-zero cells, once each


def test_barycentric_map():
    x, y = _clouds(5, 5, d=3)
    perm = torch.tensor([3, 0, 4, 1, 2])
    plan = torch.zeros(5, 5, dtype=F64)
    plan[torch.arange(5), perm] = 0.2
    assert_close(barycentric_map(plan, y.reshape(5, 3, 1)), y[perm].reshape(5, 3, 1))
    indep = torch.full((5, 5), 0.04, dtype=F64)
    assert_close(barycentric_map(indep, y), y.mean(0).expand(5, 3))


def test_minibatch_exact_is_optimal_assignment():
    x, y = _clouds(64, 64, d=4, seed=7)
    x0, x1 = minibatch_pair(x, y, method="exact")
    assert torch.equal(x0, x)
    assert torch.equal(torch.sort(x1, 0).values, torch.sort(y, 0).values)  # a permutation
    cost = 0.5 * float((x0 - x1).pow(2).sum(1).mean())
    assert cost == pytest.approx(solve_coupling(x, y, method="exact").cost, rel=1e-10)


@pytest.mark.parametrize("n", [1, 7, 256])
def test_assignment_matches_the_hungarian_solver_also_with_ties(n):
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    from sbrun.couplings.minibatch import assignment

    x, y = _clouds(n, n, d=2, seed=n)
    for C in (half_sq_dists(x, y, F64).numpy(), np.zeros((n, n)),  # all ties
              np.round(half_sq_dists(x, y, F64).numpy())):  # many ties
        perm = assignment(C)
        assert sorted(perm.tolist()) == list(range(n))
        r, c = linear_sum_assignment(C)
        assert C[np.arange(n), perm].sum() == pytest.approx(C[r, c].sum(), abs=1e-9)


def test_minibatch_entropic_pairs_are_rows_of_the_batch():
    x, y = _clouds(128, 128, seed=8)
    x0, x1 = minibatch_pair(x, y, method="sinkhorn_log", sigma=0.005,
                            generator=torch.Generator().manual_seed(0))
    assert x0.shape == x.shape and x1.shape == y.shape
    assert bool((x0[:, None] == x[None]).all(-1).any(1).all())
    assert bool((x1[:, None] == y[None]).all(-1).any(1).all())
    # near-exact plan: paired cost close to the exact OT cost, far below independent
    exact = solve_coupling(x, y, method="exact").cost
    indep = solve_coupling(x, y, method="independent").cost
    paired = 0.5 * float((x0 - x1).pow(2).sum(1).mean())
    assert abs(paired - exact) < 0.1 * (indep - exact)
    same = minibatch_pair(x, y, method="independent")
    assert same[0] is x and same[1] is y


def test_minibatch_sinkhorn_plan_matches_pot_at_the_same_tolerance():
    """The training-time solver (float32 kernel, 3 eps stages) on the hardest setting of
    the 2D protocol: torchcfm's scale (costs up to ~50), sigma = 0.1 (eps / max c ~ 2e-4)."""
    import numpy as np

    from sbrun.couplings.minibatch import MINIBATCH_SINKHORN
    from sbrun.data.toy2d import make_toy

    g = torch.Generator().manual_seed(0)
    n, sigma, tol = 256, 0.1, 1e-4
    x, y = make_toy("gaussian").sample(n, g), make_toy("torchcfm_8gaussians").sample(n, g)
    ours = solve_coupling(x, y, method="sinkhorn_log", sigma=sigma, tol=tol, max_iter=1000,
                          options=MINIBATCH_SINKHORN)
    assert ours.converged and ours.err <= tol and ours.plan.dtype == torch.float32
    w = torch.full((n,), 1 / n, dtype=F64)
    M = torch.cdist(x.double(), y.double()) ** 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ot.sinkhorn(w, w, M, 2 * sigma**2, method="sinkhorn_epsilon_scaling",
                          stopThr=tol / np.sqrt(n), numItermax=100_000)  # POT: L2 column error
    diff = float((ours.plan.double() - ref).abs().sum())
    assert diff < 2e-3  # both plans within ~1e-3 of the converged plan (POT: ~9e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        far = ot.sinkhorn(w, w, M, 2 * (1.5 * sigma) ** 2, method="sinkhorn_epsilon_scaling",
                          stopThr=tol / np.sqrt(n), numItermax=100_000)
    assert float((ours.plan.double() - far).abs().sum()) > 50 * diff  # 1.5x sigma: another plan
