"""From a user's chair: the run directory printed at the start and the end (with the
``wandb sync`` command after an offline W&B run), and ``sbrun.load_run`` for notebooks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from reliability_helpers import transport

from sbrun.errors import ConfigError

pytest_plugins = ["reliability_helpers"]  # finished_run, run_copy


def test_run_dir_and_wandb_sync_are_printed(finished_run):
    rd, proc = finished_run
    out = proc.stdout.splitlines()
    assert f"sbrun: run directory {rd}" in out
    assert f"sbrun: done; results in {rd}" in out
    sync = [ln for ln in out if "wandb sync" in ln]
    assert len(sync) == 1 and str(rd / "wandb" / "offline-run-") in sync[0]
    assert (rd / sync[0].split("wandb sync ")[1]).is_dir()


def test_load_run_is_the_transport_path(finished_run, tmp_path):
    from sbrun import load_run

    rd = finished_run[0]
    run = load_run(rd)
    assert run.config.method._target_.endswith("FlowMatching")
    assert run.metrics == json.loads((rd / "metrics.json").read_text())
    assert run.history[-1]["step"] == run.step == 20
    x = np.random.default_rng(1).normal(size=(7, 2)).astype(np.float32)
    out = run.transport(x, direction="forward")
    assert out["x1"].shape == (7, 2) and np.isfinite(out["x1"]).all()
    with pytest.raises(ConfigError, match="deterministically"):  # an ODE run: repeats are one point
        run.transport(x, repeats=2)
    np.savez(tmp_path / "p.npz", x=x)
    p = transport(rd, tmp_path / "p.npz", tmp_path / "o.npz")
    assert p.returncode == 0, p.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "o.npz")["x1"], out["x1"])
