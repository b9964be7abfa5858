"""Class labels of data sets, for class-conditional training and per-class metrics.

A :class:`Labels` view of a distribution draws ``(x, y)`` pairs (``x: (n, *D)``, ``y: (n,)``
integer classes ``0..K-1``) and held-out draws of one class. Labelled today: image sets
with labels (MNIST, Fashion-MNIST, EMNIST: the data set's own classes) and mixtures by
component (``8gaussians`` and its torchcfm variant: component ``k`` at angle ``k pi / 4``;
:class:`~sbrun.data.gaussians.GaussianMixture`, e.g. ``gmm_highdim``: component ``k``) and
``multi2d data.generative=true`` by marginal (class ``k``: the ``k``-th toy).
"""

from __future__ import annotations

import torch
from torch import Tensor

from sbrun.data.distributions import Distribution, Problem
from sbrun.data.gaussians import GaussianMixture
from sbrun.data.images import ImageSet
from sbrun.data.multi_problems import MarginalMixture
from sbrun.data.toy2d import EightGaussians
from sbrun.errors import ConfigError
from sbrun.pipeline.data import BatchSource


class Labels:
    """Labelled draws of a distribution. Subclasses set ``num_classes`` and implement
    :meth:`sample` and :meth:`heldout_class`."""

    num_classes: int = 0

    def __init__(self, dist: Distribution):
        self.dist = dist

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(x: (n, *D), y: (n,) long)``: training draws with their classes."""
        raise NotImplementedError

    def heldout_class(self, k: int, n: int, seed: int = 0) -> Tensor:
        """At most ``n`` held-out draws of class ``k``, ``(m, *D)``, fixed by ``seed``."""
        raise NotImplementedError

    def check(self, k: int) -> int:
        """``k`` if it is one of the classes, else a one-line :class:`ConfigError`."""
        if not 0 <= int(k) < self.num_classes:
            raise ConfigError(f"unknown class {k} of {self.dist.name}: classes are "
                              f"0..{self.num_classes - 1}")
        return int(k)


def _generator(k: int, seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(20_011 + 7919 * seed + 104_729 * k)


class ImageLabels(Labels):
    """The labels stored with an :class:`ImageSet`, renumbered ``0..K-1`` in sorted order
    (as ``scripts/train_classifier.py`` does: EMNIST letters 1..26 -> 0..25); held-out
    draws are test rows."""

    def __init__(self, dist: ImageSet):
        super().__init__(dist)
        n = len(dist.labels_train)
        self.values, y = torch.unique(torch.cat([dist.labels_train, dist.labels_test]),
                                      return_inverse=True)
        self.train_y, self.test_y = y[:n], y[n:]
        self.num_classes = len(self.values)

    def sample(self, n, generator=None):
        d = self.dist
        idx = d.indices(n, generator)
        x = d.train[idx]
        if d.hflip:
            flip = torch.rand(n, generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x, self.train_y[idx]

    def heldout_class(self, k, n, seed=0):
        rows = torch.nonzero(self.test_y == self.check(k)).squeeze(1)
        perm = torch.randperm(len(rows), generator=_generator(k, seed))
        return self.dist.test[rows[perm[:n]]]


class EightGaussianLabels(Labels):
    """``8gaussians`` by component: class ``k`` is the Gaussian at angle ``k pi / 4``."""

    num_classes = 8

    def _draw(self, k: Tensor, g: torch.Generator | None) -> Tensor:
        d = self.dist
        z = torch.randn((len(k), 2), generator=g, dtype=torch.float64)
        return (d.scale * (d.centres()[k] + d.COMP_STD * z)).float()

    def sample(self, n, generator=None):
        k = torch.randint(0, 8, (n,), generator=generator)
        return self._draw(k, generator), k

    def heldout_class(self, k, n, seed=0):
        return self._draw(torch.full((n,), self.check(k)), _generator(k, seed))


class MixtureLabels(Labels):
    """A :class:`GaussianMixture` by component (``k ~ w``, then ``mu_k + s_k z``)."""

    def __init__(self, dist: GaussianMixture):
        super().__init__(dist)
        self.num_classes = dist.means.shape[0]

    def _draw(self, k: Tensor, g: torch.Generator | None) -> Tensor:
        d = self.dist
        z = torch.randn((len(k), d.shape[0]), generator=g, dtype=torch.float64)
        return (d.means[k] + d.std[k, None] * z).to(d.dtype)

    def sample(self, n, generator=None):
        k = torch.multinomial(self.dist.weights, n, replacement=True, generator=generator)
        return self._draw(k, generator), k

    def heldout_class(self, k, n, seed=0):
        return self._draw(torch.full((n,), self.check(k)), _generator(k, seed))


class MarginalLabels(Labels):
    """A :class:`~sbrun.data.multi_problems.MarginalMixture` (``multi2d
    data.generative=true``) by marginal: class ``k`` is the ``k``-th toy (its index, the
    time slot a multimarginal run gives it); held-out draws are that toy's own."""

    def __init__(self, dist: MarginalMixture):
        super().__init__(dist)
        self.num_classes = len(dist.dists)

    def sample(self, n, generator=None):
        return self.dist.sample_labelled(n, generator)

    def heldout_class(self, k, n, seed=0):
        return self.dist.dists[self.check(k)].heldout(n, seed)


def labels_of(dist: Distribution | None) -> Labels | None:
    """The :class:`Labels` view of ``dist``, or ``None`` when it has no classes."""
    if isinstance(dist, MarginalMixture):
        return MarginalLabels(dist)
    if isinstance(dist, ImageSet) and dist.labels_train is not None and dist.labels_test is not None:
        return ImageLabels(dist)
    if isinstance(dist, EightGaussians):
        return EightGaussianLabels(dist)
    if isinstance(dist, GaussianMixture):
        return MixtureLabels(dist)
    return None


class LabelledBatchSource(BatchSource):
    """Training draws ``(x0, x1, y)``: ``y: (n,)`` the classes of the target draws ``x1``."""

    def __init__(self, problem: Problem, labels: Labels, prior: Distribution | None = None):
        super().__init__(problem, prior=prior)
        self.labels = labels

    def batch(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        x0 = self.source.sample(n, generator)
        x1, y = self.labels.sample(n, generator)
        return x0, x1, y
