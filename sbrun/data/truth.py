"""The closed-form ground truth a problem declares (:attr:`Problem.truth`).

The data package only says *what* is known about a problem; the pipeline attaches the
scorer that uses it (:func:`sbrun.metrics.truth.scorer_for`, called by
:func:`sbrun.pipeline.build.build`), so :mod:`sbrun.data` never imports
:mod:`sbrun.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sbrun.errors import ConfigError, check_choice

if TYPE_CHECKING:
    from sbrun.data.eot_benchmark import ConditionalGMMPlan
    from sbrun.data.gaussians import Gaussian

RESTORATION_KINDS = ("inpaint", "superres")


@dataclass(frozen=True, eq=False)
class GaussianPair:
    """Both ends are Gaussian: ``source`` ``N(m0, A)`` and ``target`` ``N(m1, B)`` (full
    :class:`~sbrun.data.gaussians.Gaussian` s, ``mean (d,)``, ``cov (d, d)``), so the
    Schrödinger bridge of ``dX = sigma dW`` is known in closed form for every ``sigma``
    (:mod:`sbrun.couplings.gaussian`)."""

    source: Gaussian
    target: Gaussian


@dataclass(frozen=True, eq=False)
class KnownPlan:
    """The entropic-OT plan ``pi(y | x)`` is known (``plan``, of ``eps = plan.eps``);
    scored on ``points`` held-out source points with ``repeats`` draws each (stochastic
    methods), Monte Carlo seeded by ``seed``."""

    plan: ConditionalGMMPlan
    points: int = 100
    repeats: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.points < 1 or self.repeats < 1:
            raise ConfigError(f"data.oracle_points and data.oracle_repeats must be >= 1, got "
                              f"{self.points}, {self.repeats}")


@dataclass(frozen=True)
class Restoration:
    """A paired restoration task: ``kind`` = ``inpaint`` | ``superres``; ``factor``: the
    super-resolution's down-sampling factor (images in ``[-1, 1]``)."""

    kind: str
    factor: int = 2

    def __post_init__(self) -> None:
        check_choice("restoration kind", self.kind, RESTORATION_KINDS)
