"""Training/evaluation draws of ``(x0, x1)`` from a :class:`~sbrun.data.Problem`."""

from __future__ import annotations

import torch
from torch import Tensor

from sbrun.data.distributions import Distribution, Problem, StandardGaussian


class BatchSource:
    """Draws training pairs; the source of a generative problem is ``prior``.

    Args:
        problem: the data problem.
        prior: distribution used as source when ``problem.source is None``.
    """

    def __init__(self, problem: Problem, prior: Distribution | None = None):
        self.problem = problem
        self.source: Distribution = problem.source or prior or StandardGaussian(problem.shape)
        self.target = problem.target

    def batch(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``(x0, x1)``, each ``(n, *D)``; rows are paired when the data is paired."""
        if self.problem.paired:
            idx = self.source.indices(n, generator)
            return self.source.train[idx], self.target.train[idx]
        return self.source.sample(n, generator), self.target.sample(n, generator)
