"""DSB: step-size schedules, mean-matching targets against the linear-Gaussian closed form,
one IPF iteration through the CLI, checkpoints and resume inside an IPF iteration."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from sbrun.data.problems import gaussian
from sbrun.errors import ConfigError
from sbrun.methods.base import Phase
from sbrun.methods.dsb import DSB
from sbrun.methods.dsb_chain import ReferenceChain, gamma_schedule
from sbrun.pipeline.data import BatchSource
from sbrun.sde import VP, Brownian

SMOKE = ["debug=smoke", "logger=none", "method=dsb", "data=swissroll2scurve",
         "method.num_steps=10", "method.cache_size=200"]


@pytest.mark.parametrize("schedule, spacing", [("constant", "linear"), ("symmetric", "linear"),
                                               ("symmetric", "geometric")])
@pytest.mark.parametrize("n", [1, 7, 20, 50])
@pytest.mark.parametrize("horizon", [0.2, 1.0, 1.5])
def test_gamma_schedules_sum_to_the_horizon_and_are_symmetric(schedule, spacing, n, horizon):
    g = gamma_schedule(n, horizon, schedule, gamma_ratio=100.0, spacing=spacing)
    assert g.shape == (n,) and bool((g > 0).all())
    torch.testing.assert_close(g.sum(), torch.tensor(horizon, dtype=torch.float64))
    torch.testing.assert_close(g, g.flip(0))
    if schedule == "symmetric" and n >= 4:  # rises to the middle, ratio gamma_max / gamma_min
        half = g[: n // 2]
        assert bool((torch.diff(half) > 0).all())
        torch.testing.assert_close(g.max() / g.min(), torch.tensor(100.0, dtype=torch.float64))
    if schedule == "constant":
        torch.testing.assert_close(g, torch.full_like(g, horizon / n))


def test_reference_noise_matches_the_sde():
    """Brownian: std_k^2 = sigma^2 h_k, total variance sigma^2 (DSB's sqrt(2 gamma) when
    sigma^2 = 2 horizon); VP: the exact kernel keeps N(0, I) invariant."""
    gam = gamma_schedule(30, 1.5, "symmetric", 20.0)
    ref = ReferenceChain(Brownian(0.7), gam, "source")
    torch.testing.assert_close(ref.std**2, 0.49 * ref.h)
    torch.testing.assert_close(ref.h, gam / 1.5)
    dsb_like = ReferenceChain(Brownian((2 * 1.5) ** 0.5), gam, "source")
    torch.testing.assert_close(dsb_like.std, (2 * gam).sqrt())
    vp = ReferenceChain(VP(), gamma_schedule(20), "target")
    x = torch.ones(20, 1, dtype=torch.float64)
    a = vp.mean(torch.arange(20), x)[:, 0]
    torch.testing.assert_close(a**2 + vp.std**2, torch.ones(20, dtype=torch.float64))


@pytest.mark.parametrize("start", ["source", "target"])
def test_a_drifting_brownian_reference_has_the_brownian_bridges(start):
    """``dX = a dt + sigma dW`` (``method.reference_drift=auto``) reaches ``x_start + a`` (or
    ``- a`` backward) but, pinned at both ends, is the Brownian bridge: regressing ``x_k``
    on the far end ``x_N`` from ``x_0 = 0`` gives slope ``t_k`` and intercept 0 whatever
    ``a`` (closed form: ``E[x_k | x_N] = t_k a + t_k (x_N - a) = t_k x_N``)."""
    from sbrun.methods.dsb_chain import run_chain

    gam = gamma_schedule(10, 1.0, "symmetric", 5.0)
    a = torch.tensor([3.0, -2.0], dtype=torch.float64)
    ref = ReferenceChain(Brownian(0.8), gam, start, drift=a)
    g = torch.Generator().manual_seed(0)
    direction = "forward" if start == "source" else "backward"
    n = 200_000
    rec = torch.empty(n, 11, 2, dtype=torch.float64)
    run_chain(ref.mean, torch.zeros(n, 2, dtype=torch.float64), ref.std, direction, g, record=rec)
    far = rec[:, -1] if start == "source" else rec[:, 0]
    sign = 1.0 if start == "source" else -1.0
    torch.testing.assert_close(far.mean(0), sign * a, atol=0.01, rtol=0)
    frac = ref.t if start == "source" else 1.0 - ref.t  # the fraction of the way travelled
    for k in (2, 5, 8):
        xk = rec[:, k]
        xc, fc = xk - xk.mean(0), far - far.mean(0)
        slope = (xc * fc).sum(0) / fc.pow(2).sum(0)
        intercept = xk.mean(0) - slope * far.mean(0)
        torch.testing.assert_close(slope, frac[k].expand(2), atol=0.01, rtol=0)
        torch.testing.assert_close(intercept, torch.zeros(2, dtype=torch.float64), atol=0.02, rtol=0)
    with pytest.raises(ConfigError, match="Brownian reference"):
        ReferenceChain(VP(), gamma_schedule(10), "target", drift=a)


def test_reference_drift_auto_is_the_difference_of_the_data_means():
    prob = gaussian(dim=3, seed=0)  # source mean 0, target mean (1, 1, 1)
    m_ = DSB(num_steps=5)
    m_.bind(prob, Brownian(1.0))
    torch.testing.assert_close(m_.reference.drift, torch.ones(3, dtype=torch.float64), atol=0.05, rtol=0)
    off = DSB(num_steps=5, reference_drift="none")
    off.bind(prob, Brownian(1.0))
    assert off.reference.drift is None
    with pytest.raises(ConfigError, match="method.reference_drift"):
        DSB(reference_drift="mean")


class Affine(nn.Module):
    """``net(x, t) = L (c - x)``: a linear (OU-like) drift, so the chain's kernel is affine."""

    def __init__(self, L: torch.Tensor, c: torch.Tensor):
        super().__init__()
        self.L, self.c = L, c

    def forward(self, x, t):
        return (self.c - x) @ self.L.T


@pytest.mark.parametrize("trained", ["B", "F"])
def test_mean_matching_target_is_the_backward_mean_linear_gaussian(trained):
    """With an affine frozen chain ``y = A x + b + s z`` and ``x ~ N(m, S)``, the best
    predictor of ``x`` from ``y`` is ``m + S A^T (A S A^T + s^2 I)^{-1} (y - A m - b)``.
    The least-squares fit of the mean-matching targets on samples recovers it up to
    DSB's O(h) relative error in the drift (seed 003, mean matching)."""
    n_steps, k = 50, 20
    m_ = DSB(num_steps=n_steps)
    m_.bind(gaussian(dim=2, seed=0), Brownian(1.0))
    L = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
    c = torch.tensor([0.5, -1.0], dtype=torch.float64)
    frozen = "F" if trained == "B" else "B"
    nets = nn.ModuleDict({frozen: Affine(L, c)})
    phase = Phase("p", 1, trainable=(trained,), index=2)
    gen = torch.Generator().manual_seed(0)
    m_.begin_phase(phase, nets, {"generator": gen, "data": None, "device": torch.device("cpu")})
    m, S = torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor([[1.0, 0.4], [0.4, 0.6]],
                                                                       dtype=torch.float64)
    n = 400_000
    x = m + torch.randn(n, 2, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(S).T
    kk = torch.full((n,), k)
    s = float(m_.std[k])
    y = m_._frozen(kk, x) + s * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    x_k, x_k1 = (x, y) if trained == "B" else (y, x)
    x_in, shift = m_.mean_matching_target(x_k, x_k1, kk)
    torch.testing.assert_close(x_in, y)
    # least squares: target ~ y P^T + p
    design = torch.cat([y, torch.ones(n, 1, dtype=torch.float64)], 1)
    coef = torch.linalg.lstsq(design, y + shift).solution
    P_hat, p_hat = coef[:2].T, coef[2]
    h = float(m_.h[k])
    A = torch.eye(2, dtype=torch.float64) - h * L
    b = h * L @ c
    gain = S @ A.T @ torch.linalg.inv(A @ S @ A.T + s**2 * torch.eye(2, dtype=torch.float64))
    P, p = gain, m - gain @ (A @ m + b)
    # compare drifts (P - I, p): they are O(h); the relative error must be O(h ||L||)
    drift = torch.linalg.norm(P - torch.eye(2, dtype=torch.float64)) + torch.linalg.norm(p)
    err = torch.linalg.norm(P_hat - P) + torch.linalg.norm(p_hat - p)
    assert float(err / drift) < 3 * h * float(torch.linalg.norm(L)) + 0.01, float(err / drift)


def test_phases_alternate_and_evaluate_once_per_iteration():
    m_ = DSB(ipf_iters=3)
    m_.bind(gaussian(dim=2), Brownian(1.0))  # data -> data: the reference starts at the source
    ph = m_.phases(7)
    assert [p.trainable for p in ph] == [("B",), ("F",)] * 3
    assert [p.step_label for p in ph] == [1, 1, 2, 2, 3, 3]
    assert [p.evaluate for p in ph] == [False, True] * 3 and all(p.steps == 7 for p in ph)
    gen = DSB(ipf_iters=2)
    gen.bind(gaussian(dim=2, generative=True), Brownian(1.0))  # IPF 1 = SGM: F first
    assert [p.trainable for p in gen.phases(5)] == [("F",), ("B",)] * 2


def test_transport_runs_the_chain_with_n_evaluations():
    m_ = DSB(num_steps=12, cache_size=64)
    problem = gaussian(dim=3)
    m_.bind(problem, Brownian(1.0))
    nets = nn.ModuleDict({"F": Affine(torch.eye(3), torch.zeros(3)),
                          "B": Affine(torch.eye(3), torch.ones(3))})
    x = torch.randn(10, 3)
    fwd = m_.transport(nets, x, None, None, keep=4, generator=torch.Generator().manual_seed(0))
    bwd = m_.transport(nets, x, None, None, direction="backward", keep=4,
                       generator=torch.Generator().manual_seed(0))
    assert fwd.nfe == 12 and fwd.path.shape == (4, 13, 3) and fwd.t[0] == 0 and fwd.t[-1] == 1
    assert bwd.t[0] == 1 and bwd.t[-1] == 0
    torch.testing.assert_close(fwd.path[:, 0], x[:4])
    torch.testing.assert_close(fwd.path[:, -1], fwd.x[:4])
    # the cache holds whole trajectories of the frozen chain in time order
    phase = m_.phases(3)[1]  # train F on B's paths from the target
    data = BatchSource(problem)
    m_.begin_phase(phase, nets, {"generator": torch.Generator().manual_seed(0), "data": data,
                                 "device": torch.device("cpu")})
    m_._refill(torch.device("cpu"))
    states, means = m_.cache.states, m_.cache.means
    assert states.shape == (64, 13, 3) and means.shape == (64, 12, 3)
    k = torch.full((64,), 5)
    torch.testing.assert_close(means[:, 5], m_._frozen(k, states[:, 6]))  # B's mean from x_6
    resid = (states[:, 5] - means[:, 5]) / float(m_.std[5])  # the step's noise, N(0, I)
    assert 0.7 < float(resid.std()) < 1.3


def _rows(rd):
    return [json.loads(line) for line in (rd / "metrics.jsonl").read_text().splitlines()]


def test_one_ipf_iteration_end_to_end(cli):
    proc, rd = cli(*SMOKE, "method.ipf_iters=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = _rows(rd)
    assert len(rows) == 1 and rows[0]["step"] == 1 and rows[0]["phase"] == "ipf1-forward"
    for key in ("w2", "w2_floor", "kl", "w2_backward", "w2_floor_backward", "kl_backward"):
        assert np.isfinite(rows[0][key]), key
    metrics = json.loads((rd / "metrics.json").read_text())
    assert metrics["nfe"] == 10 and metrics["steps"] == 40 and metrics["ipf_iter"] == 1
    s = np.load(rd / "samples.npz")
    assert s["path"].shape == (8, 11, 2) and s["t"].shape == (11,) and "x0_backward" in s
    state = torch.load(rd / "checkpoints" / "last.pt", weights_only=False)
    assert {k.split(".")[0] for k in state["nets"]} == {"F", "B"}
    assert state["phase_idx"] == 2


def test_figures_show_ipf_1_next_to_the_last_with_ipf_axes(cli):
    proc, rd = cli(*SMOKE, "method.ipf_iters=2", "trainer.checkpoint_every=0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r["ipf_iter"] for r in _rows(rd)] == [1.0, 2.0]
    assert (rd / "figures" / "ipf_first_last.png").exists() and (rd / "figures" / "metrics.png").exists()
    from sbrun.pipeline.evaluator import Evaluation
    from sbrun.pipeline.run import make_figures

    x = torch.randn(10, 2)
    from sbrun.solvers.base import SolveResult

    ev = Evaluation({}, x, SolveResult(x=x, nfe=1, t=torch.linspace(0, 1, 2), path=None), x)
    fig = make_figures(ev, [{"step": 1, "w2": 1.0, "ipf_iter": 1.0}, {"step": 2, "w2": 0.5, "ipf_iter": 2.0}],
                       "t")["metrics"]
    assert fig.axes[0].get_xlabel() == "IPF iteration"


def test_checkpoint_and_resume_inside_an_ipf_iteration(cli, tmp_path):
    args = [*SMOKE, "method.ipf_iters=2", "method.cache_refresh=7", "eval.figures=false",
            "trainer.checkpoint_every=0"]
    full, rd_full = cli(*args)
    assert full.returncode == 0, full.stderr[-2000:]
    rd = tmp_path / "interrupted"
    first, _ = cli(*args, "trainer.interrupt_at=50", run_dir=rd)  # IPF 2, first half, step 10
    assert first.returncode != 0 and "resume=true" in first.stderr
    state = torch.load(rd / "checkpoints" / "last.pt", weights_only=False)
    assert {k.split(".")[0] for k in state["nets"]} == {"F", "B"}
    assert (state["phase_idx"], state["phase_step"], state["step"]) == (2, 10, 50)
    assert state["phase_idx"] // 2 + 1 == 2  # the IPF iteration it was in
    assert [r["step"] for r in _rows(rd)] == [1]
    second, _ = cli(*args, "resume=true", run_dir=rd)
    assert second.returncode == 0, second.stderr[-2000:]
    assert [r["step"] for r in _rows(rd)] == [1, 2]
    a = json.loads((rd_full / "metrics.json").read_text())
    b = json.loads((rd / "metrics.json").read_text())
    for key in ("w2", "w2_backward", "kl", "kl_backward"):  # the cache is rebuilt identically
        assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), key
