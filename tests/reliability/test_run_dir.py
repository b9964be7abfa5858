"""Items 3, 4, 10: a run directory with a run in it is never reused or damaged; SIGTERM,
resumes of finished runs and the W2 floor."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from reliability_helpers import SMOKE, compose, digest, env, one_line_error, run_sbrun, transport

from sbrun.errors import ConfigError
from sbrun.pipeline import rundir

pytest_plugins = ["reliability_helpers"]  # finished_run, run_copy


def test_item3_a_finished_run_is_refused_without_resume(run_copy):
    before = digest(run_copy)
    line = one_line_error(run_sbrun(run_copy, *SMOKE))
    assert "resume=true" in line and "fresh directory" in line
    assert digest(run_copy) == before  # last.pt, metrics.jsonl, .hydra, status: untouched


def test_item3_a_second_process_is_locked_out(tmp_path):
    rd = tmp_path / "busy"
    lock = rundir.claim(rd, False)  # this test process is the run using rd
    try:
        line = one_line_error(run_sbrun(rd, *SMOKE))
        assert "in use by another sbrun process" in line
        assert not (rd / "status.json").exists() and not (rd / ".hydra").exists()
        with pytest.raises(ConfigError, match="in use"):
            rundir.claim(rd, True)
    finally:
        lock.close()
    rundir.claim(rd, False).close()  # released: the directory can be used again


def test_item4_a_rejected_command_leaves_the_finished_run_usable(run_copy, tmp_path):
    before = digest(run_copy)
    for bad in (["sde.sigma=0", "resume=true"], ["trainer.ema=1.5", "resume=true"]):
        assert "error" in one_line_error(run_sbrun(run_copy, *SMOKE, *bad))
    assert digest(run_copy) == before  # .hydra/config.yaml not rewritten
    np.savez(tmp_path / "p.npz", x=np.zeros((3, 2), dtype=np.float32))
    p = transport(run_copy, tmp_path / "p.npz", tmp_path / "o.npz")
    assert p.returncode == 0, p.stderr[-2000:]


def test_item10_sigterm_writes_interrupted_status_and_keeps_the_checkpoint(tmp_path):
    rd = tmp_path / "term"
    cmd = [sys.executable, "-m", "sbrun", f"hydra.run.dir={rd}", *SMOKE, "trainer.steps=100000",
           "trainer.checkpoint_every=20"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    deadline = time.time() + 240
    while not (rd / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    status = json.loads((rd / "status.json").read_text())
    assert status["status"] == "interrupted" and "SIGTERM" in status["error"]
    assert "resume=true" in err
    from sbrun.pipeline.checkpoint import load_checkpoint

    assert load_checkpoint(rd / "checkpoints" / "last.pt")["step"] >= 20


def test_item10_resuming_a_finished_run_adds_no_metrics_row(run_copy):
    rows = (run_copy / "metrics.jsonl").read_text().splitlines()
    proc = run_sbrun(run_copy, *SMOKE, "resume=true")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run_copy / "metrics.jsonl").read_text().splitlines() == rows
    assert json.loads((run_copy / "status.json").read_text())["status"] == "completed"


def test_item10_w2_floor_is_a_mean_over_held_out_pairs(finished_run):
    """w2_floor averages eval.w2_floor_pairs independent held-out pairs and reports their
    spread; with one pair it is the single draw of before."""
    from sbrun.metrics.distances import w2
    from sbrun.metrics.pairs import heldout_halves
    from sbrun.pipeline.build import build
    from sbrun.pipeline.evaluator import Evaluator

    metrics = json.loads((finished_run[0] / "metrics.json").read_text())
    assert metrics["w2_floor_std"] > 0
    floors = {}
    for k in (1, 4):
        cfg = compose([*SMOKE, f"eval.w2_floor_pairs={k}"])
        c = build(cfg)
        ev = Evaluator(cfg.eval, c.method, c.data, c.solver, cfg.solver.steps, c.device, cfg.seed)
        floors[k] = (ev.floor, ev.floor_std)
    assert floors[1][1] == 0.0 and floors[4][1] > 0
    target = c.data.target
    n = len(ev.target)
    draws = [floors[1][0]]
    for k in range(1, 4):
        a, b = heldout_halves(target, n, cfg.seed + 7919 * k)
        g = torch.Generator().manual_seed(cfg.seed)
        draws.append(w2(a, b, max_points=cfg.eval.w2_points, generator=g))
    assert floors[4][0] == pytest.approx(np.mean(draws), rel=1e-9)
    assert floors[4][1] == pytest.approx(np.std(draws, ddof=1), rel=1e-9)
