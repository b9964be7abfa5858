"""The scorer of a problem's declared ground truth (:mod:`sbrun.data.truth`).

:func:`scorer_for` is the one place that maps what a problem knows to what scores a run
against it; the pipeline calls it (:func:`sbrun.pipeline.build.build`) and the evaluator
calls the scorer's ``score(method, nets, evaluator, samples) -> dict`` once per
evaluation, with ``samples: (n, *D)`` the method's transport of ``evaluator.source``.
"""

from __future__ import annotations

from sbrun.data.truth import GaussianPair, KnownPlan, Restoration
from sbrun.errors import ConfigError


def scorer_for(truth):
    """``None`` -> ``None``; :class:`GaussianPair` -> :class:`~sbrun.metrics.oracle.
    GaussianOracle`; :class:`KnownPlan` -> :class:`~sbrun.metrics.benchmark_oracle.
    BenchmarkOracle`; :class:`Restoration` -> :class:`~sbrun.metrics.restoration.
    RestorationMetrics`."""
    if truth is None:
        return None
    if isinstance(truth, GaussianPair):
        from sbrun.metrics.oracle import GaussianOracle

        return GaussianOracle(truth.source, truth.target)
    if isinstance(truth, KnownPlan):
        from sbrun.metrics.benchmark_oracle import BenchmarkOracle

        return BenchmarkOracle(truth.plan, n=truth.points, repeats=truth.repeats, seed=truth.seed)
    if isinstance(truth, Restoration):
        from sbrun.metrics.restoration import RestorationMetrics

        return RestorationMetrics(truth.kind, truth.factor)
    raise ConfigError(f"no scorer for the ground truth {type(truth).__name__}: declare a "
                      "sbrun.data.truth type")
