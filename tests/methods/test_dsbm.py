"""DSBM: the bridge-matching targets against the Brownian bridge, IMF phases and pairs,
and a short run through the shared pipeline."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from sbrun.data.problems import gaussian
from sbrun.errors import ConfigError
from sbrun.methods.base import Batch
from sbrun.methods.dsbm import DSBM
from sbrun.sde import Brownian

F64 = torch.float64
SIGMA = 0.7


def make(**kw) -> DSBM:
    m = DSBM(**kw)
    m.bind(gaussian(dim=2, seed=0), Brownian(SIGMA))
    return m


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_bridge_matching_target_is_the_bridge_drift(direction):
    """The regression target is the drift of the Brownian bridge pinned at (x0, x1): the mean
    increment of exact bridge draws ``E[X_{t+h} - X_t | X_t, x0, x1] / h`` (forward) or, in
    reversed time, ``E[X_{t-h} - X_t | X_t, x0, x1] / h`` (backward, by the bridge's
    time symmetry), estimated by Monte Carlo from ``sde.bridge_path``."""
    m = make()
    sde = m.sde
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.tensor([[0.5, -1.0]], dtype=F64), torch.tensor([[2.0, 1.0]], dtype=F64)
    t, h, n = 0.3, 1e-3, 200_000
    x_t = sde.bridge(torch.tensor([t], dtype=F64), x0, x1).sample(generator=g)
    if direction == "forward":  # from (t, x_t) the remaining bridge to (1, x1): one step of h
        grid = torch.tensor([0.0, h / (1 - t), 1.0], dtype=F64)
        start, end = x_t, x1
    else:  # reversed time s = 1 - t: the bridge from (s, x_t) to (1, x0)
        grid = torch.tensor([0.0, h / t, 1.0], dtype=F64)
        start, end = x_t, x0
    # the remaining bridge is a Brownian bridge of sigma' = sigma sqrt(remaining time) on [0, 1]
    rem = (1 - t) if direction == "forward" else t
    step = Brownian(SIGMA * rem**0.5).bridge_path(start.repeat(n, 1), end.repeat(n, 1), grid, g)
    mc = (step[:, 1] - step[:, 0]).mean(0) / h
    target = m.bridge_target(torch.tensor([t], dtype=F64), x_t, x0, x1, direction)[0]
    torch.testing.assert_close(target, mc, atol=0.05 * float(mc.abs().max()) + 0.05, rtol=0)
    expected = (x1 - x_t)[0] / (1 - t) if direction == "forward" else (x0 - x_t)[0] / t
    torch.testing.assert_close(target, expected)


def test_phases_alternate_and_first_coupling_sets_the_order():
    ph = make(imf_iters=2).phases(5)
    assert [p.trainable for p in ph] == [("F",), ("B",), ("F",), ("B",)]
    assert [p.evaluate for p in ph] == [False, True, False, True]
    assert [p.step_label for p in ph] == [1, 1, 2, 2]
    ph = make(imf_iters=1, first_coupling="reference").phases(5)
    assert [p.trainable for p in ph] == [("B",), ("F",)]


def test_first_pairs_and_cached_pairs():
    """Independent pairs are the batch; the reference's are ``(x0, x0 + sigma Z)``; later
    phases draw pairs simulated by the other net (same end marginals as that net's SDE)."""
    from sbrun.pipeline.data import BatchSource

    m = make(first_coupling="reference", cache_size=500, cache_refresh=3, num_steps=10)
    data = BatchSource(m.problem)
    g = torch.Generator().manual_seed(1)
    nets = nn.ModuleDict({"F": ZeroNet(), "B": ZeroNet()})
    phases = m.phases(5)
    m.begin_phase(phases[0], nets, {"generator": g, "data": data, "device": "cpu"})
    x0 = torch.randn(20_000, 2, generator=g)
    b = Batch(x0, torch.zeros_like(x0), g)
    p0, p1 = m.pairs(b)
    assert torch.equal(p0, x0)
    assert float((p1 - p0).std()) == pytest.approx(SIGMA, rel=0.03)
    m.begin_phase(phases[1], nets, {"generator": g, "data": data, "device": "cpu"})
    c0, c1 = m.pairs(Batch(x0[:64], x0[:64], g))  # B = 0: x0 = x1 + sigma Z, x1 ~ target
    assert m.cache[0].shape == (500, 2)
    assert float((m.cache[0] - m.cache[1]).std()) == pytest.approx(SIGMA, rel=0.1)


class ZeroNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(()))

    def forward(self, x, t):
        return torch.zeros_like(x) + 0 * self.p


class ConstNet(nn.Module):
    """Predicts the point ``c`` everywhere (an end point under ``predict=endpoint``)."""

    def __init__(self, c):
        super().__init__()
        self.c = nn.Parameter(torch.as_tensor(c, dtype=torch.float32))

    def forward(self, x, t):
        return self.c.expand_as(x)


def test_endpoint_prediction_drives_towards_the_predicted_end():
    """``predict=endpoint``: the sampled drift is the bridge's drift towards the net's
    output, ``(c - x) / (1 - s)`` in the solver's time ``s`` both ways (the ODE's is their
    half-difference); the loss regresses the pair's end itself, unweighted."""
    m = make(predict="endpoint")
    c, x = torch.tensor([1.0, -2.0]), torch.tensor([[0.5, 0.5], [3.0, -1.0]])
    nets = nn.ModuleDict({"F": ConstNet(c), "B": ConstNet(-c)})
    s = torch.full((2,), 0.25)
    torch.testing.assert_close(m._sde_drift(nets["F"], "forward")(s, x), (c - x) / 0.75)
    torch.testing.assert_close(m._sde_drift(nets["B"], "backward")(s, x), (-c - x) / 0.75)
    m.sampler = "ode"  # t = 0.25: F's drift (c - x) / 0.75, B's (-c - x) / 0.25
    torch.testing.assert_close(m.drift(nets)(s, x), 0.5 * ((c - x) / 0.75 - (-c - x) / 0.25))
    g = torch.Generator().manual_seed(0)
    m.begin_phase(m.phases(5)[0], nets, {"generator": g})
    x0, x1 = torch.randn(512, 2, generator=g), torch.randn(512, 2, generator=g)
    out = m.loss(nets, Batch(x0, x1, g), m.phases(5)[0])
    assert float(out.loss.detach()) == pytest.approx(float((x1 - c).pow(2).sum(1).mean()), rel=1e-5)
    with pytest.raises(ConfigError, match="method.predict"):
        DSBM(predict="score")


def test_bad_options_are_refused():
    from sbrun.sde.vp import VP

    with pytest.raises(ConfigError):
        DSBM(first_coupling="ot")
    with pytest.raises(ConfigError):
        DSBM(imf_iters=0)
    with pytest.raises(ConfigError, match="sde=brownian"):
        DSBM().bind(gaussian(dim=2), VP())


def test_cli_run_reports_oracle_and_both_directions(cli):
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc, run_dir = cli("method=dsbm", "data=gaussian2gaussian", "debug=smoke",
                        "method.imf_iters=2", "trainer.steps=10", "method.cache_size=64",
                        "method.num_steps=5", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"cbw2_uvp", "w2_backward", "imf_iter"} <= set(metrics)
    assert metrics["imf_iter"] == 2.0
    bad, _ = cli("method=dsbm", "solver=euler", "debug=smoke", env=env)
    assert bad.returncode != 0 and "stochastic solver" in bad.stderr


def test_endpoint_prediction_refuses_the_probability_flow_sampler():
    """(F - B) / 2 of endpoint nets divides by t and 1 - t: refused before training."""
    with pytest.raises(ConfigError, match="predict=endpoint needs method.sampler=sde"):
        DSBM(predict="endpoint", sampler="ode")
    assert DSBM(predict="endpoint", sampler="sde").predict == "endpoint"
