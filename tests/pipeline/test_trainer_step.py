"""The trainer's step without per-step overhead: what it skips changes nothing a run sees."""

from __future__ import annotations

import pytest
import torch

from sbrun.config import TrainerConfig
from sbrun.pipeline.build import build
from sbrun.pipeline.checkpoint import load_checkpoint
from sbrun.pipeline.trainer import Trainer
from tests.conftest import compose

RUN = ["method=flow-matching", "data=torchcfm_gaussian2moons", "model.hidden=16", "model.depth=2",
       "trainer.batch_size=32", "trainer.steps=6", "trainer.progress=false", "logger=none",
       "trainer.checkpoint_every=3", "trainer.threads=1"]


def _trainer(tmp_path, *overrides) -> Trainer:
    cfg = compose([*RUN, *overrides])
    c = build(cfg)
    return Trainer(cfg.trainer, c.method, c.nets, c.data, tmp_path, c.device, cfg.seed)


def _flat(nets) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in nets.parameters()])


def test_config_is_read_as_a_plain_dataclass(tmp_path):
    from omegaconf import OmegaConf

    assert type(_trainer(tmp_path).cfg) is TrainerConfig
    cfg = compose(RUN)
    c = build(cfg)
    untyped = OmegaConf.create(OmegaConf.to_container(cfg.trainer))  # no schema attached
    t = Trainer(untyped, c.method, c.nets, c.data, tmp_path, c.device, cfg.seed)
    assert type(t.cfg) is TrainerConfig and t.cfg.batch_size == 32


def test_ema_zero_is_the_weights_wherever_it_is_read(tmp_path):
    """With ``trainer.ema=0`` the EMA copy is deferred to its reads: the EMA networks handed
    out and those in every checkpoint equal the weights of that step."""
    t = _trainer(tmp_path, "trainer.ema=0", "trainer.interrupt_at=3")
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    for k, v in state["nets"].items():
        assert torch.equal(state["ema"][k], v), k
    t.train_step(t.phases[0])  # one more step: the EMA read afterwards follows it
    assert torch.equal(_flat(t.ema), _flat(t.nets))
    assert not torch.equal(_flat(t.ema), torch.cat([v.flatten() for v in state["nets"].values()]))


def test_ema_decay_still_averages(tmp_path):
    t = _trainer(tmp_path, "trainer.ema=0.9")
    t.fit()
    assert not torch.equal(_flat(t.ema), _flat(t.nets))
