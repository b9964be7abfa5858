"""Losses never synchronise a GPU: a method's ``loss`` returns detached tensors in its stats
and calls no ``.item()``; the trainer reads them at logging time only."""

import pytest
import torch
from conftest import compose

from sbrun.methods.base import Batch
from sbrun.pipeline.build import build

CASES = {
    "flow-matching": [],
    "flow-matching-sb": ["method=flow-matching", "method.coupling=entropic_ot", "method.blur=0",
                         "solver=euler_maruyama"],
    "stochastic-interpolant": ["method=stochastic-interpolant"],
    "ddpm": ["method=ddpm"],
    "score-sde": ["method=score-sde"],
    "eot-neural": ["method=eot", "method.map=neural", "method.n_plan=64"],
    "lightsb": ["method=lightsb"],
    "dsbm": ["method=dsbm"],
    "dsb": ["method=dsb", "data=swissroll2scurve", "method.cache_size=16", "method.num_steps=4"],
    "multimarginal": ["method=multimarginal"],
}


@pytest.mark.parametrize("name", list(CASES))
def test_loss_stats_are_lazy_tensors(name, monkeypatch):
    overrides = CASES[name] or [f"method={name}"]
    c = build(compose(["debug=smoke", "logger=none", "device=cpu", *overrides]))
    g = torch.Generator().manual_seed(0)
    phase = c.method.phases(3)[0]
    c.method.begin_phase(phase, c.nets, {"generator": g, "device": c.device, "data": c.data,
                                         "phase_step": 0})
    x0, x1 = c.data.batch(16, g)[:2]
    calls = []

    def counting_item(self):
        calls.append(1)
        raise AssertionError("loss() called .item(): a GPU would synchronise every step")

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    out = c.method.loss(c.nets, Batch(x0, x1, g), phase)
    monkeypatch.undo()
    assert not calls
    assert out.stats and all(isinstance(v, torch.Tensor) and not v.requires_grad
                             for v in out.stats.values())
    assert torch.isfinite(out.loss)
