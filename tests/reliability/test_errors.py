"""Items 6, 7, 8: one line and exit code 2 for every user error, every option checked
before the first training step, nonsense refused."""

from __future__ import annotations

import numpy as np
import pytest
from reliability_helpers import SMOKE, compose, digest, one_line_error, run_sbrun, transport

from sbrun.errors import ConfigError

pytest_plugins = ["reliability_helpers"]  # finished_run, run_copy


@pytest.mark.parametrize("args, expected", [
    (["trainer.stpes=5"], "stpes"),                      # typo
    (["trainer.steps=abc"], "trainer.steps=abc"),        # wrong type
    (["method=nope"], "valid: control, ddpm"),                    # unknown option, with the choices
    (["data=npz"], "target_path"),                       # a mandatory value left out
    (["trainer.lr=-1e-3"], "trainer.lr must be"),
    (["eval.w2_points=0"], "eval.w2_points must be >= 2"),
])
def test_item6_one_line_exit_2(tmp_path, args, expected):
    rd = tmp_path / "run"
    line = one_line_error(run_sbrun(rd, *SMOKE, *args))
    assert expected in line
    assert not (rd / "checkpoints").exists() and not (rd / "metrics.jsonl").exists()


def test_item6_verbose_keeps_the_traceback(tmp_path):
    proc = run_sbrun(tmp_path / "run", *SMOKE, "trainer.steps=abc", "verbose=true")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_item6_unwritable_run_dir_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("")
    line = one_line_error(run_sbrun(tmp_path / "a_file" / "run", *SMOKE))
    assert "Not a directory" in line


def test_item6_changed_model_on_resume_is_one_line(run_copy):
    before = digest(run_copy)
    line = one_line_error(run_sbrun(run_copy, *SMOKE, "model.hidden=64", "resume=true"))
    assert "does not fit this model" in line
    assert digest(run_copy) == before


@pytest.mark.parametrize("args, expected", [
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--steps", "0"], "--steps must be >= 1"),                    # item 8: not the run's steps
    (["--out-dir-missing"], "does not exist"),
])
def test_item6_item8_transport_one_line(finished_run, tmp_path, args, expected):
    np.savez(tmp_path / "p.npz", x=np.zeros((3, 2), dtype=np.float32))
    out = tmp_path / "o.npz"
    if args == ["--out-dir-missing"]:
        args, out = [], tmp_path / "missing" / "o.npz"
    line = one_line_error(transport(finished_run[0], tmp_path / "p.npz", out, *args), "sbrun-transport")
    assert expected in line


@pytest.mark.parametrize("args, expected", [
    (["solver=ode", "solver.scheme=nope"], "unknown solver.scheme 'nope'"),
    (["eval.kl_bins=0"], "eval.kl_bins must be >= 2"),
    (["method=eot", "method.map=neural", "solver=euler", "method.n_plan=32"], "integrates ODEs only"),
    (["trainer.ema=1.5"], "trainer.ema"),                                      # item 8
    (["trainer.lr=0"], "trainer.lr"),
    (["trainer.schedule=linear"], "trainer.schedule"),
    (["eval.n_samples=1"], "eval.n_samples"),
])
def test_item7_item8_checked_before_the_first_step(tmp_path, args, expected):
    """In process: ``run`` refuses before training and before writing anything."""
    from sbrun.pipeline.run import run

    rd = tmp_path / "run"
    cfg = compose([*SMOKE, *args])
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(".", r"\.")):
        run(cfg, rd, on_ready=lambda: pytest.fail("validated although invalid"))
    assert not rd.exists() or not any(rd.iterdir())


def test_item7_eot_neural_picks_a_stochastic_solver_by_default(tmp_path):
    from sbrun.pipeline.build import build
    from sbrun.pipeline.run import preflight
    from sbrun.solvers import time_grid

    cfg = compose([*SMOKE, "method=eot", "method.map=neural", "method.n_plan=32"])
    assert cfg.solver.name == "euler_maruyama"
    c = build(cfg)
    preflight(c, c.nets, time_grid(cfg.solver.steps))  # the default fits: no error
