"""The CLI end to end on tiny step counts: the run directory contract and bad input."""

import json

import numpy as np
import pytest

SMOKE = ["debug=smoke", "logger=none"]


def test_run_writes_the_output_contract(cli):
    proc, rd = cli(*SMOKE, "data=swissroll2scurve")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for f in ("metrics.json", "metrics.jsonl", "samples.npz", "checkpoints/last.pt",
              ".hydra/config.yaml", ".hydra/overrides.yaml", "run.log",
              "figures/samples.png", "figures/trajectories.png"):
        assert (rd / f).exists(), f
    metrics = json.loads((rd / "metrics.json").read_text())
    for key in ("w2", "w2_floor", "kl", "nfe", "wall_seconds", "path_energy"):
        assert key in metrics, key
    assert metrics["nfe"] == 5 and metrics["steps"] == 20
    rows = [json.loads(line) for line in (rd / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 20 and rows[-1]["phase"] == "train"
    s = np.load(rd / "samples.npz")
    n = s["x0"].shape[0]
    assert s["x1"].shape == (n, 2) and s["target"].shape[1:] == (2,)
    assert s["path"].shape == (8, 6, 2) and s["t"].shape == (6,)
    np.testing.assert_allclose(s["path"][:, 0], s["x0"][:8], rtol=1e-6)
    np.testing.assert_allclose(s["path"][:, -1], s["x1"][:8], rtol=1e-5)


def test_npz_point_clouds_any_dim(cli, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", x=rng.normal(size=(300, 3)))
    np.savez(tmp_path / "b.npz", x=rng.normal(size=(300, 3)) + 2)
    proc, rd = cli(*SMOKE, "data=npz", f"data.source_path={tmp_path / 'a.npz'}",
                   f"data.target_path={tmp_path / 'b.npz'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert np.load(rd / "samples.npz")["x1"].shape[1] == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["method=nope"], "Could not find 'method/nope'"),
        (["data=nope"], "Could not find 'data/nope'"),
        (["sde.sigma=0"], "sde.sigma must be > 0"),
        (["sde.sigma=-1"], "sde.sigma must be > 0"),
        (["solver.steps=0"], "solver.steps must be >= 1"),
        (["solver.name=rk9"], "unknown solver 'rk9'"),
        (["trainer.steps=abc"], "trainer.steps"),
        (["trainer.stpes=5"], "stpes"),
        (["data=npz", "data.target_path=/nonexistent/b.npz"], "no such file"),
        (["resume=true"], "no checkpoint"),
        (["trainer.lr=1e30"], "non-finite loss"),
        (["eval.method_metrics=sometimes"], "eval.method_metrics=sometimes"),
        (["eval.oracle=sometimes"], "eval.oracle=sometimes; valid: every, final"),
        # issue 13: a knob that would change nothing is refused, old sigmas point to sde.sigma
        (["method=multimarginal", "sde.sigma=2"], "method=multimarginal has no reference"),
        (["sde=vp"], "method=flow-matching has no reference"),
        (["solver=euler", "solver.snr=0.3"], "solver=euler does not use solver.snr"),
        (["solver=pc", "solver.scheme=rk4"], "solver=pc does not use solver.scheme"),
        (["method.sigma=0.1"], "the reference's, sde.sigma"),
        (["method.coupling_sigma=0.1"], "sde.sigma"),
        (["method=dsb", "method.T=0.5"], "method.T was renamed: method.chain_steps (ddpm"),
        (["method.coupling=entropic_ot"], "use a stochastic solver"),
    ],
)
def test_bad_input_is_one_clear_error(cli, args, message):
    proc, _ = cli(*SMOKE, *args)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr


def test_method_metrics_at_the_final_evaluation_only(cli):
    """``eval.method_metrics=final``: the method's own (expensive) metrics, here flow
    matching's path energy, only at the last evaluation; ``every`` at each one."""
    for when, expected in (("final", [False, True]), ("every", [True, True])):
        proc, run_dir = cli(*SMOKE, "trainer.eval_every=10", f"eval.method_metrics={when}")
        assert proc.returncode == 0, proc.stderr[-1500:]
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        evals = [r for r in rows if "w2" in r]
        assert [r["step"] for r in evals] == [10, 20]
        assert ["path_energy" in r for r in evals] == expected


def test_oracle_at_the_final_evaluation_only(cli):
    """``eval.oracle=final``: the ground truth's scores (here the Gaussian bridge's
    cB-W2-UVP of DSBM's conditionals) only at the last evaluation, W2 at every one;
    ``every`` (the default) scores each."""
    args = [*SMOKE, "data=gaussian2gaussian", "data.dim=2", "method=dsbm", "method.imf_iters=2",
            "trainer.steps=5", "sde.sigma=1"]
    for when, expected in (("final", [False, True]), ("every", [True, True])):
        proc, run_dir = cli(*args, f"eval.oracle={when}")
        assert proc.returncode == 0, proc.stderr[-1500:]
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        evals = [r for r in rows if "w2" in r]
        assert len(evals) == 2
        assert ["cbw2_uvp" in r for r in evals] == expected
        assert "cbw2_uvp" in json.loads((run_dir / "metrics.json").read_text())


def test_npz_errors(cli, tmp_path):
    np.savez(tmp_path / "noX.npz", y=np.zeros((10, 2)))
    np.savez(tmp_path / "d2.npz", x=np.zeros((10, 2)))
    np.savez(tmp_path / "d3.npz", x=np.zeros((10, 3)))
    proc, _ = cli(*SMOKE, "data=npz", f"data.target_path={tmp_path / 'noX.npz'}")
    assert proc.returncode != 0 and "'x'" in proc.stderr and "Traceback" not in proc.stderr
    proc, _ = cli(*SMOKE, "data=npz", f"data.source_path={tmp_path / 'd2.npz'}",
                  f"data.target_path={tmp_path / 'd3.npz'}")
    assert proc.returncode != 0 and "differ" in proc.stderr and "Traceback" not in proc.stderr


def test_resume_gives_the_same_final_metrics(cli, tmp_path):
    full, rd_full = cli(*SMOKE, "trainer.checkpoint_every=7")
    assert full.returncode == 0, full.stderr[-2000:]
    rd = tmp_path / "interrupted"
    first, _ = cli(*SMOKE, "trainer.checkpoint_every=7", "trainer.interrupt_at=13", run_dir=rd)
    assert first.returncode != 0 and "resume=true" in first.stderr
    second, _ = cli(*SMOKE, "trainer.checkpoint_every=7", "resume=true", run_dir=rd)
    assert second.returncode == 0, second.stderr[-2000:]
    a = json.loads((rd_full / "metrics.json").read_text())
    b = json.loads((rd / "metrics.json").read_text())
    for key in ("w2", "kl", "path_energy"):
        assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), key
    assert b["steps"] == 20
