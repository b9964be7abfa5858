"""The float32 scaling-domain Sinkhorn: plans against POT at the same tolerance."""

import math
import warnings

import numpy as np
import ot
import pytest
import torch

import sbrun.couplings.scaling as scaling
from sbrun.couplings import half_sq_dists, minibatch_pair, solve_coupling
from sbrun.couplings.scaling import sinkhorn_scaling

F64 = torch.float64


def _problem(n, m, seed=0, uniform=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=F64)
    y = torch.randn(m, 2, generator=g, dtype=F64) * 0.5 + torch.tensor([2.0, 1.0], dtype=F64)
    if uniform:
        a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    else:
        a = torch.rand(n, generator=g, dtype=F64).numpy() + 0.2
        b = torch.rand(m, generator=g, dtype=F64).numpy() + 0.2
        a, b = a / a.sum(), b / b.sum()
    return x.float(), y.float(), a, b


def _pot(C, a, b, eps, tol):
    """POT's log-domain Sinkhorn on ``M = 2 C`` (``reg = 2 eps``); its stopping rule (L2
    column error) at ``tol / sqrt(m)`` implies our L1 criterion."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ot.sinkhorn(a, b, 2.0 * C, 2.0 * eps, method="sinkhorn_log",
                           stopThr=tol / math.sqrt(C.shape[1]), numItermax=200_000)


def _err(plan, a, b):
    p = np.asarray(plan, np.float64)
    return float(np.abs(p.sum(1) - a).sum() + np.abs(p.sum(0) - b).sum())


def _absorptions(monkeypatch):
    count = [0]
    absorb = scaling._Scalings.absorb

    def spy(self):
        count[0] += 1
        absorb(self)

    monkeypatch.setattr(scaling._Scalings, "absorb", spy)
    return count


@pytest.mark.parametrize("ratio", [1e-1, 1e-2, 1e-3])
@pytest.mark.parametrize("uniform", [True, False])
def test_plan_matches_pot_at_the_same_tolerance(ratio, uniform):
    x, y, a, b = _problem(90, 70, seed=1, uniform=uniform)
    C = half_sq_dists(x, y, torch.float32).numpy()
    eps, tol = ratio * float(C.max()), 1e-5
    plan, (f, g), _, err = sinkhorn_scaling(C, a, b, eps, tol=tol)
    assert plan.dtype == np.float32 and err <= tol and _err(plan, a, b) <= tol
    ref = _pot(C.astype(np.float64), a, b, eps, tol)
    assert _err(ref, a, b) <= tol
    assert np.abs(plan - ref).sum() < 5 * tol  # both within ~tol of the same plan
    dual = a[:, None] * b[None, :] * np.exp((f[:, None] + g[None, :] - C) / eps)
    assert np.abs(dual - plan).sum() < 1e-5  # the potentials give the plan


def test_small_eps_forces_absorption_and_keeps_the_plan(monkeypatch):
    """Without eps-scaling at eps = 1e-3 max C the potentials move by ~1000 eps: the
    scalings are absorbed many times; the plan must still be POT's (an absorption that
    does not rebuild the kernel from the new potentials is off by the absorbed factor)."""
    count = _absorptions(monkeypatch)
    x, y, a, b = _problem(60, 50, seed=2, uniform=False)
    C = half_sq_dists(x, y, torch.float32).numpy()
    eps, tol = 1e-3 * float(C.max()), 1e-5
    plan, _, _, err = sinkhorn_scaling(C, a, b, eps, tol=tol, max_iter=50_000, start_ratio=0.0)
    assert count[0] >= 3 and err <= tol and _err(plan, a, b) <= tol
    ref = _pot(C.astype(np.float64), a, b, eps, tol)
    assert np.abs(plan - ref).sum() < 5 * tol


def test_eps_scaling_reaches_the_plan_of_a_single_stage():
    x, y, a, b = _problem(80, 80, seed=3)
    C = half_sq_dists(x, y, torch.float32).numpy()
    eps, tol = 3e-3 * float(C.max()), 1e-6
    scaled, _, it_scaled, _ = sinkhorn_scaling(C, a, b, eps, tol=tol, max_iter=50_000)
    single, _, it_single, _ = sinkhorn_scaling(C, a, b, eps, tol=tol, max_iter=50_000,
                                               start_ratio=0.0)
    assert np.abs(scaled - single).sum() < 5 * tol
    assert it_scaled < it_single


def test_float64_cost_is_solved_in_float32():
    x, y, a, b = _problem(50, 40, seed=4)
    C = half_sq_dists(x, y, torch.float32).numpy()
    p32 = sinkhorn_scaling(C, a, b, 0.05, tol=1e-6)[0]
    p64 = sinkhorn_scaling(C.astype(np.float64), a, b, 0.05, tol=1e-6)[0]
    assert p64.dtype == np.float32 and np.array_equal(p32, p64)


def test_not_converged_reports_the_error():
    x, y, a, b = _problem(100, 100, seed=5)
    C = half_sq_dists(x, y, torch.float32).numpy()
    plan, _, it, err = sinkhorn_scaling(C, a, b, 1e-3, tol=1e-6, max_iter=20)
    assert it == 20 and err > 1e-6 and np.isfinite(plan).all()
    assert _err(plan, a, b) == pytest.approx(err, rel=1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_solve_coupling_float32_takes_the_scaling_path_and_float64_does_not(dtype, monkeypatch):
    calls = []
    real = scaling.sinkhorn_scaling
    monkeypatch.setattr(scaling, "sinkhorn_scaling", lambda *a, **k: calls.append(1) or real(*a, **k))
    x, y, a, b = _problem(120, 100, seed=6, uniform=False)
    x, y = x.to(dtype), y.to(dtype)
    sigma, tol = 0.2, 1e-5
    r = solve_coupling(x, y, method="sinkhorn_log", sigma=sigma, a=torch.from_numpy(a),
                       b=torch.from_numpy(b), tol=tol)
    assert len(calls) == (dtype == torch.float32)
    assert r.converged and r.err <= tol and r.plan.dtype == dtype
    C = half_sq_dists(x, y).numpy()
    ref = _pot(C, a, b, sigma**2, tol)
    assert np.abs(r.plan.double().numpy() - ref).sum() < 5 * tol
    f, g = (p.double().numpy() for p in r.potentials)
    dual = a[:, None] * b[None, :] * np.exp((f[:, None] + g[None, :] - C) / sigma**2)
    assert np.abs(dual - r.plan.double().numpy()).sum() < 1e-4


def test_solve_coupling_keeps_the_float64_solver_where_float32_does_not_serve(monkeypatch):
    monkeypatch.setattr(scaling, "sinkhorn_scaling", None)  # would fail if called
    x, y, _, _ = _problem(40, 40, seed=7)
    solve_coupling(x, y, method="sinkhorn_log", sigma=0.2)  # tol 1e-6 < MIN_TOL
    solve_coupling(x, y, method="sinkhorn_log", sigma=1e-3, tol=1e-4)  # eps / max C < MIN_RATIO
    solve_coupling(x, y, method="sinkhorn_log", sigma=0.2, tol=1e-4, a=torch.arange(40.0))  # a_0 = 0
    solve_coupling(x, y, method="sinkhorn_log", sigma=0.2, tol=1e-4, options={"f0": torch.zeros(40)})


def test_minibatch_pair_solves_float32_batches_directly(monkeypatch):
    import sbrun.couplings.minibatch as mb

    seen = []
    real = mb.sinkhorn_scaling
    monkeypatch.setattr(mb, "sinkhorn_scaling", lambda C, *a, **k: seen.append(C.dtype) or real(C, *a, **k))
    monkeypatch.setattr(mb, "solve_coupling", None)  # no detour through the float64 path
    x, y, _, _ = _problem(128, 128, seed=8)
    x0, x1 = minibatch_pair(x, y, method="sinkhorn_log", sigma=0.1,
                            generator=torch.Generator().manual_seed(0))
    assert seen == [np.float32] and x0.dtype == x1.dtype == torch.float32
    assert bool((x1[:, None] == y[None]).all(-1).any(1).all())
    again = minibatch_pair(x, y, method="sinkhorn_log", sigma=0.1,
                           generator=torch.Generator().manual_seed(0))
    assert torch.equal(x0, again[0]) and torch.equal(x1, again[1])


def test_draw_pairs_follow_the_plan():
    from sbrun.couplings.minibatch import draw_pairs

    plan = torch.tensor([[0.1, 0.0, 0.2, 0.1], [0.0, 0.3, 0.0, 0.05], [0.15, 0.0, 0.0, 0.1]])
    i, j = draw_pairs(plan, 200_000, torch.Generator().manual_seed(0))
    freq = torch.zeros(3, 4).index_put_((i, j), torch.ones(len(i)), accumulate=True) / len(i)
    torch.testing.assert_close(freq, plan, atol=4e-3, rtol=0)
    assert float(freq[plan == 0].sum()) == 0.0
    first = draw_pairs(plan, 50, torch.Generator().manual_seed(5))
    again = draw_pairs(plan, 50, torch.Generator().manual_seed(5))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
