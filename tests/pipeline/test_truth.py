"""The problem declares its ground truth (``Problem.truth``); the pipeline attaches the
scorer (``Components.scorer``, :func:`sbrun.metrics.truth.scorer_for`)."""

import math

import pytest
import torch

from sbrun.config import compose
from sbrun.data.truth import GaussianPair, KnownPlan, Restoration
from sbrun.errors import ConfigError
from sbrun.metrics.benchmark_oracle import BenchmarkOracle
from sbrun.metrics.oracle import GaussianOracle
from sbrun.metrics.restoration import RestorationMetrics
from sbrun.metrics.truth import scorer_for
from sbrun.pipeline.build import build
from sbrun.pipeline.evaluator import Evaluator

SMOKE = ["debug=smoke", "logger=none", "device=cpu"]


def test_gaussian_problem_gets_the_gaussian_oracle_at_the_runs_sigma():
    cfg = compose([*SMOKE, "data=gaussian2gaussian", "data.dim=3", "method=dsbm", "sde.sigma=0.7"])
    c = build(cfg)
    assert isinstance(c.problem.truth, GaussianPair)
    assert isinstance(c.scorer, GaussianOracle)
    assert c.scorer.g0 is c.problem.source and c.scorer.g1 is c.problem.target
    assert c.scorer.g0.cov.shape == (3, 3) and c.scorer.g0.cov.dtype == torch.float64
    ev = Evaluator(cfg.eval, c.method, c.data, c.solver, cfg.solver.steps, c.device, cfg.seed,
                   scorer=c.scorer)
    out = ev(c.nets, 0)
    assert out["oracle_sigma"] == pytest.approx(0.7)
    assert math.isfinite(out["cbw2_uvp"]) and out["cbw2_uvp"] > 0  # an untrained bridge


def test_toy_problem_has_no_truth_and_no_scorer():
    c = build(compose([*SMOKE, "data=moons2circles"]))
    assert c.problem.truth is None and c.scorer is None


def test_benchmark_problem_gets_its_oracle_with_its_options():
    c = build(compose([*SMOKE, "data=eot_benchmark", "method=dsbm", "sde.sigma=0.5",
                       "data.oracle_points=30", "data.oracle_repeats=40"]))
    assert isinstance(c.problem.truth, KnownPlan)
    assert isinstance(c.scorer, BenchmarkOracle)
    assert (c.scorer.n, c.scorer.repeats) == (30, 40)
    assert c.scorer.plan is c.problem.truth.plan and c.scorer.plan.eps == pytest.approx(0.25)


def test_restoration_truth_gets_restoration_metrics():
    m = scorer_for(Restoration("superres", 4))
    assert isinstance(m, RestorationMetrics) and (m.kind, m.factor) == ("superres", 4)
    x1 = torch.rand(3, 1, 8, 8) * 2 - 1

    class Ev:  # what RestorationMetrics.score reads of the evaluator
        source, target = torch.zeros_like(x1), x1

    out = m.score(None, None, Ev(), x1)  # a perfect completion
    assert out["mse"] == 0 and out["mse_lowres"] == 0
    assert out["mse_copy"] == pytest.approx(float(x1.pow(2).mean()))


def test_bad_truth_is_a_one_line_error():
    with pytest.raises(ConfigError, match="restoration kind 'blur'"):
        Restoration("blur")
    with pytest.raises(ConfigError, match="no scorer for the ground truth dict"):
        scorer_for({"kind": "gaussian"})
    with pytest.raises(ConfigError, match="oracle_points"):
        build(compose([*SMOKE, "data=eot_benchmark", "data.oracle_points=0"]))
