"""Problems with K marginals (multimarginal methods): the ``_target_`` of ``conf/data/multi2d.yaml``.

A :class:`~sbrun.data.distributions.Problem` moves one source to one target, so the
builders here put every marginal in ``extra["marginals"]`` (names in ``extra["names"]``)
and make ``source``/``target`` the run's main pair ``i -> j``, which the evaluator scores;
a two-marginal method given this data simply solves ``i -> j``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from sbrun.data.distributions import Distribution, Problem
from sbrun.errors import ConfigError


class MarginalMixture(Distribution):
    """The equal mixture of K distributions (``multi2d data.generative=true``): a draw picks
    marginal ``k`` uniformly, then draws from it; :meth:`sample_labelled` also returns ``k``
    (the class of :class:`~sbrun.data.conditional.MarginalLabels`)."""

    def __init__(self, dists: Sequence[Distribution], names: Sequence[str], name: str):
        self.dists, self.names, self.name = list(dists), list(names), name
        self.shape = tuple(self.dists[0].shape)

    def sample_labelled(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(x: (n, *D), k: (n,))``: draws and the index of the marginal each came from."""
        k = torch.randint(0, len(self.dists), (n,), generator=generator)
        x = torch.empty((n, *self.shape))
        for j, dist in enumerate(self.dists):
            rows = torch.nonzero(k == j).squeeze(1)
            if len(rows):
                x[rows] = dist.sample(len(rows), generator).to(x.dtype)
        return x, k

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.sample_labelled(n, generator)[0]


def multi2d(marginals: Sequence[str] = ("moons", "circles", "swissroll", "8gaussians"),
            source_index: int = 0, target_index: int = 1, scale: float = 1.0,
            name: str = "multi2d", generative: bool = False) -> Problem:
    """K 2D toys (names of :func:`sbrun.data.toy2d.make_toy`); source = marginal
    ``source_index``, target = marginal ``target_index``. ``generative=true``: no source
    (the prior) and the target is the equal mixture of the K toys, labelled by marginal
    index (class-conditional runs: ``method.cond_drop``, ``sampler.label=k`` draws toy k);
    the main pair is then unused and left at its default."""
    from sbrun.data.toy2d import make_toy

    names = [str(m) for m in marginals]
    if len(names) < 2:
        raise ConfigError(f"data.marginals needs at least two 2D toys, got {names}")
    if generative and (source_index, target_index) != (0, 1):
        raise ConfigError("data.generative=true draws the mixture of all marginals: "
                          "data.source_index / data.target_index choose nothing; drop them")
    for key, idx in (("source_index", source_index), ("target_index", target_index)):
        if not 0 <= idx < len(names):
            raise ConfigError(f"data.{key}={idx} is not in 0..{len(names) - 1} "
                              f"(marginals: {names})")
    if source_index == target_index:
        raise ConfigError(f"data.source_index and data.target_index are both {source_index}")
    dists = [make_toy(m, scale) for m in names]
    extra = {"marginals": dists, "names": names}
    if generative:
        return Problem(name, MarginalMixture(dists, names, name), None, extra=extra)
    return Problem(name, dists[target_index], dists[source_index], extra=extra)


def default_data_root() -> str | None:
    """``$SBRUN_DATA_ROOT``, else ``<repo>/../shared/data`` when it exists, else ``None``."""
    import os
    from pathlib import Path

    env = os.environ.get("SBRUN_DATA_ROOT")
    if env:
        return env
    shared = Path(__file__).resolve().parents[3] / "shared" / "data"
    return str(shared) if shared.is_dir() else None


def mnist_classes(root: str | None = None, classes: Sequence[int] = (0, 1, 2, 3, 4, 5),
                  source_index: int | None = None, target_index: int = 0,
                  max_train: int | None = None, max_test: int | None = None, seed: int = 0,
                  name: str = "mnist_classes") -> Problem:
    """MNIST digit classes as marginals (seed 004, slide 40), with the main pair chosen.

    Wraps :func:`sbrun.data.image_problems.mnist_classes`; ``source_index=None`` keeps the
    problem generative (source: the Gaussian prior) with target ``classes[target_index]``.
    ``root``: ``data.root``, else :func:`default_data_root`.
    """
    from sbrun.data.image_problems import mnist_classes as load

    base = load(root or default_data_root(), classes, max_train=max_train, max_test=max_test,
                seed=seed, name=name)
    marginals = base.extra["marginals"]
    for key, idx in (("source_index", source_index), ("target_index", target_index)):
        if idx is not None and not 0 <= idx < len(marginals):
            raise ConfigError(f"data.{key}={idx} is not in 0..{len(marginals) - 1} "
                              f"(classes: {list(classes)})")
    if source_index is not None and source_index == target_index:
        raise ConfigError(f"data.source_index and data.target_index are both {source_index}")
    src = None if source_index is None else marginals[source_index]
    names = [f"digit {c}" for c in base.extra["classes"]]
    return Problem(name, marginals[target_index], src, extra={**base.extra, "names": names})
