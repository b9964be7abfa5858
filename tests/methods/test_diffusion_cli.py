"""ddpm and score-sde through the config tree and the CLI: smoke runs and bad input."""

import json

import pytest
from conftest import compose

from sbrun.errors import ConfigError

SMOKE = ["debug=smoke", "logger=none", "trainer.threads=1", "eval.figures=false"]


@pytest.mark.parametrize("method, extra", [
    ("ddpm", ["solver=ancestral", "solver.steps=10", "method.chain_steps=50"]),
    ("score-sde", ["solver=euler_maruyama"]),
])
def test_smoke_run_reports_nll(cli, method, extra):
    proc, rd = cli(*SMOKE, f"method={method}", "data=moons", "method.nll_points=50", *extra)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((rd / "metrics.json").read_text())
    for key in ("w2", "w2_floor", "nfe", "nll", "nll_nfe"):
        assert key in metrics, key
    assert metrics["nll"] == metrics["nll"]  # finite, not NaN
    if method == "ddpm":
        assert metrics["nfe"] == 10 and metrics["nll_elbo"] > 0


def build(overrides):
    """Build and run the solver check the evaluator runs before training."""
    from sbrun.pipeline.build import build as _build
    from sbrun.solvers import check_solver

    c = _build(compose(["debug=smoke", *overrides]))
    check_solver(c.solver, c.method)
    return c


@pytest.mark.parametrize("overrides, message", [
    (["method=ddpm", "data=gaussian2moons"], "generates from its prior only"),
    (["method=ddpm", "solver=pc", "data=gaussian2gaussian"], "generates from its prior only"),
    (["method=score-sde", "data=swissroll2scurve"], "generates from its prior only"),
    (["method=flow-matching", "solver=ancestral"], "solver=ancestral needs a discrete reverse"),
    (["method=flow-matching", "solver=pc"], "solver=pc needs the score"),
    (["method=score-sde", "method.sampler=sde", "solver=rk4", "data=moons"], "integrates ODEs only"),
    (["method=ddpm", "sde=ve", "data=moons"], "method=ddpm discretises the VP SDE"),
    (["method=score-sde", "sde=vp", "sde.beta_max=0.05", "data=moons"], "beta_max must be > "),
    (["method=score-sde", "sde=ve", "sde.sigma_min=10", "data=moons"], "sigma_max must be > "),
    (["method=flow-matching", "+method.likelihood=true"], "likelihood"),
    (["method=score-sde", "solver=ode", "solver.scheme=rk9", "data=moons"],
     "unknown solver.scheme 'rk9'"),  # refused when the solver is configured, before training
])
def test_bad_input_is_one_clear_config_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build(overrides)


def test_solver_mismatch_fails_before_training(cli):
    proc, rd = cli(*SMOKE, "method=flow-matching", "solver=ancestral")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "solver=ancestral needs a discrete reverse chain" in proc.stderr, proc.stderr[-1500:]
    assert not (rd / "checkpoints").exists()


def test_method_brings_its_reference_and_prior():
    c = build(["method=score-sde"])
    assert c.problem.name == "moons" and c.sde.name == "vp"
    assert c.method.sde is c.sde and c.data.source is c.method.prior
    c = build(["method=score-sde", "data=moons", "sde=ve", "sde.sigma_max=3"])
    assert c.data.source.std == 3.0
    c = build(["method=ddpm", "data=moons", "sde.schedule=cosine"])
    assert c.method.chain.steps == 1000 and c.sde.schedule == "cosine"
    c = build(["method=score-sde", "data=moons", "solver=pc", "solver.snr=0.3"])
    assert c.solver.fn.keywords["snr"] == 0.3
