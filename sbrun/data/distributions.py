"""Distributions and the source/target problem every method solves.

A :class:`Distribution` draws samples ``(n, *shape)``; analytic ones also give
``log_prob`` and ``score``. A :class:`Problem` pairs a source (``t = 0``) with a
target (``t = 1``); ``source is None`` means *generative*: the source is the
method's prior (a standard Gaussian unless the SDE says otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from sbrun.errors import DataError


class Distribution:
    """Base class. Subclasses set ``shape`` and implement :meth:`sample`.

    ``heldout(n, seed)`` returns evaluation draws that are the same for a given seed
    and independent of training draws; empirical distributions return rows of their
    held-out split instead.
    """

    shape: tuple[int, ...] = ()
    name: str = "distribution"
    # Class labels of the training / test rows, ``(N,)`` int64, where the data set has them
    # (labelled image sets); ``None`` otherwise.
    labels_train: Tensor | None = None
    labels_test: Tensor | None = None

    @property
    def dim(self) -> int:
        """Number of scalar entries of one sample (``prod(shape)``)."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` samples, shape ``(n, *self.shape)``, float32."""
        raise NotImplementedError

    def heldout(self, n: int, seed: int = 0) -> Tensor:
        """``n`` held-out evaluation samples, fixed by ``seed``; ``(n, *shape)``."""
        g = torch.Generator().manual_seed(10_007 + 7919 * seed)
        return self.sample(n, g)

    def log_prob(self, x: Tensor) -> Tensor:  # pragma: no cover - optional
        """Log-density at ``x: (B, *shape)`` -> ``(B,)``, where known in closed form."""
        raise NotImplementedError(f"{self.name} has no closed-form density")

    @property
    def has_density(self) -> bool:
        return type(self).log_prob is not Distribution.log_prob


class StandardGaussian(Distribution):
    """``N(0, I)`` on ``shape``; the default prior of every method."""

    def __init__(self, shape: tuple[int, ...], std: float = 1.0):
        self.shape = tuple(shape)
        self.std = float(std)
        self.name = "gaussian"

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.std * torch.randn((n, *self.shape), generator=generator)

    def log_prob(self, x: Tensor) -> Tensor:
        d = self.dim
        sq = x.reshape(x.shape[0], -1).pow(2).sum(1) / self.std**2
        return -0.5 * sq - 0.5 * d * torch.log(torch.tensor(2 * torch.pi * self.std**2))


class Empirical(Distribution):
    """Rows of a finite data set; ``sample`` draws training rows with replacement.

    Args:
        train: ``(n_train, *shape)`` rows used for training.
        test: ``(n_test, *shape)`` held-out rows for evaluation (``heldout``).
    """

    def __init__(self, train: Tensor, test: Tensor, name: str = "empirical"):
        if train.shape[1:] != test.shape[1:]:
            raise DataError(f"{name}: train {tuple(train.shape)} and test {tuple(test.shape)} differ")
        self.train = train.float()
        self.test = test.float()
        self.shape = tuple(train.shape[1:])
        self.name = name

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        idx = torch.randint(0, self.train.shape[0], (n,), generator=generator)
        return self.train[idx]

    def indices(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Training row indices (for paired data sets)."""
        return torch.randint(0, self.train.shape[0], (n,), generator=generator)

    def heldout(self, n: int, seed: int = 0) -> Tensor:
        m = self.test.shape[0]
        if n <= m:
            g = torch.Generator().manual_seed(seed)
            return self.test[torch.randperm(m, generator=g)[:n]]
        return self.test


@dataclass
class Problem:
    """A transport problem: move ``source`` (t = 0) to ``target`` (t = 1).

    Attributes:
        name: the data config's name (``swissroll2scurve``).
        target: distribution at ``t = 1``.
        source: distribution at ``t = 0``; ``None`` for a generative problem, where the
            method's prior fills in.
        paired: row ``i`` of an empirical source goes with row ``i`` of the target.
        truth: the closed-form ground truth the problem knows, if any (a
            :mod:`sbrun.data.truth` type, e.g. ``GaussianPair`` for Gaussian-to-Gaussian
            problems); the pipeline attaches the scorer that uses it.
    """

    name: str
    target: Distribution
    source: Distribution | None = None
    paired: bool = False
    truth: object | None = None
    extra: dict = field(default_factory=dict)

    @property
    def generative(self) -> bool:
        return self.source is None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.target.shape

    def __post_init__(self):
        if self.source is not None and tuple(self.source.shape) != tuple(self.target.shape):
            raise DataError(
                f"{self.name}: source shape {tuple(self.source.shape)} and target shape "
                f"{tuple(self.target.shape)} differ"
            )
        if self.paired and not (
            isinstance(self.source, Empirical)
            and isinstance(self.target, Empirical)
            and self.source.train.shape[0] == self.target.train.shape[0]
        ):
            raise DataError(f"{self.name}: paired data needs two empirical sets of equal length")
