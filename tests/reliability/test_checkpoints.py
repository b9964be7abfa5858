"""Items 1, 2, 5: the last good checkpoint is finite, checkpoints never run code, and every
finished run (the training-free ones included) can be transported."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from reliability_helpers import SMOKE, compose, one_line_error, run_sbrun, transport

from sbrun.errors import ConfigError, TrainingError
from sbrun.pipeline.checkpoint import load_checkpoint

pytest_plugins = ["reliability_helpers"]  # finished_run, run_copy


def _trainer(tmp_path, *overrides):

    from sbrun.pipeline.build import build
    from sbrun.pipeline.trainer import Trainer

    cfg = compose([*SMOKE, "trainer.steps=20", "trainer.checkpoint_every=5", *overrides])
    c = build(cfg)
    return Trainer(cfg.trainer, c.method, c.nets, c.data, tmp_path, c.device, cfg.seed)


def test_item1_diverged_weights_never_replace_the_last_good_checkpoint(tmp_path):
    """Train to step 10 (interrupted), then diverge with lr=1e30 and a checkpoint every step:
    the step-11 checkpoint holds the weights that gave inf and is rolled back, so last.pt is
    still the step-10 one, bit for bit, and a resume with a sane lr finishes."""
    t = _trainer(tmp_path, "trainer.interrupt_at=10")
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    last = tmp_path / "checkpoints" / "last.pt"
    good = torch.load(last, weights_only=True)
    assert good["step"] == 10

    t = _trainer(tmp_path, "trainer.lr=1e30", "trainer.checkpoint_every=1")
    t.load_state_dict(load_checkpoint(last), last)
    with pytest.raises(TrainingError, match=r"last good checkpoint: .*last\.pt \(step 10\)"):
        t.fit()
    kept = torch.load(last, weights_only=True)
    assert kept["step"] == 10
    for k, v in good["ema"].items():
        assert torch.equal(kept["ema"][k], v), k
    assert not (tmp_path / "checkpoints" / "prev.pt").exists()

    t = _trainer(tmp_path)
    t.load_state_dict(load_checkpoint(last), last)
    t.fit()
    assert t.step == 20
    assert all(torch.isfinite(p).all() for p in t.nets.parameters())
    # a finished run keeps one checkpoint: its final weights
    assert not (tmp_path / "checkpoints" / "prev.pt").exists()


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling this calls Path.touch(marker)
        return (type(self.marker).touch, (self.marker,))


def test_item2_a_checkpoint_carrying_code_is_refused_never_run(run_copy, tmp_path):
    marker = tmp_path / "code_ran"
    state = load_checkpoint(run_copy / "checkpoints" / "last.pt")  # weights_only=True reads it
    state["history"] = _RunsCode(marker)
    torch.save(state, run_copy / "checkpoints" / "last.pt")
    with pytest.raises(ConfigError, match="cannot be read as weights only"):
        load_checkpoint(run_copy / "checkpoints" / "last.pt")
    np.savez(tmp_path / "pts.npz", x=np.zeros((4, 2), dtype=np.float32))
    line = one_line_error(transport(run_copy, tmp_path / "pts.npz", tmp_path / "o.npz"),
                          "sbrun-transport")
    assert "weights only" in line
    line = one_line_error(run_sbrun(run_copy, *SMOKE, "resume=true"))
    assert "weights only" in line
    assert not marker.exists()


def test_item2_a_corrupt_checkpoint_is_one_line(run_copy, tmp_path):
    ckpt = run_copy / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # truncated (a full disk, a killed copy)
    np.savez(tmp_path / "pts.npz", x=np.zeros((4, 2), dtype=np.float32))
    line = one_line_error(transport(run_copy, tmp_path / "pts.npz", tmp_path / "o.npz"),
                          "sbrun-transport")
    assert "corrupt" in line and str(ckpt) in line


def test_item5_eot_plan_run_is_transportable_from_its_saved_plan(tmp_path):
    rd = tmp_path / "eot"
    proc = run_sbrun(rd, *SMOKE, "method=eot", "method.n_plan=64", "sde.sigma=0.5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    state = load_checkpoint(rd / "checkpoints" / "last.pt")
    plan = state["method"]["plan"]
    assert plan.shape == (64, 64) and abs(float(plan.sum()) - 1) < 1e-6

    from sbrun import load_run

    run = load_run(rd)
    m = run.components.method
    assert m.solution is not None and torch.equal(m.solution.plan, plan)  # restored, not re-solved
    x = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    out = run.transport(x, repeats=4)
    assert out["x1"].shape == (5, 4, 2)
    # x1 ~ pi(. | x): every endpoint is one of the conditional's target atoms, the plan's first
    atoms = m.atoms()[0]
    assert torch.equal(atoms[:64], state["method"]["x1s"]) and atoms.shape[0] == m.n_atoms
    targets = atoms.float().numpy()
    d = np.abs(out["x1"].reshape(-1, 1, 2) - targets[None]).sum(-1).min(1)
    assert d.max() < 1e-5
    np.savez(tmp_path / "pts.npz", x=x)
    p = transport(rd, tmp_path / "pts.npz", tmp_path / "o.npz", "--repeats", "4")
    assert p.returncode == 0, p.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "o.npz")["x1"], out["x1"])
    shutil.rmtree(rd)


def test_item10_resume_inside_a_reflow_round_is_bit_identical(tmp_path):
    """The reflow round's pair set is in the checkpoint: a run interrupted inside the round
    and resumed trains on the same pairs with the same generator, ending bit for bit where
    the uninterrupted run ends (it used to end ~1e-5 away: the pairs were regenerated)."""
    reflow = ["method=flow-matching", "method.reflow=1", "method.reflow_pairs=64",
              "method.reflow_steps=4", "method.energy_steps=0"]
    whole = _trainer(tmp_path / "whole", *reflow)
    whole.fit()
    cut = _trainer(tmp_path / "cut", *reflow, "trainer.interrupt_at=27")  # round 1 is steps 21-40
    with pytest.raises(KeyboardInterrupt):
        cut.fit()
    last = tmp_path / "cut" / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    assert state["step"] == 27 and len(state["method"]["pairs"]) == 2
    resumed = _trainer(tmp_path / "cut", *reflow)
    resumed.load_state_dict(state, last)
    resumed.fit()
    assert resumed.step == whole.step == 40
    for (k, a), b in zip(whole.ema.state_dict().items(), resumed.ema.state_dict().values()):
        assert torch.equal(a, b), k
