"""Image problems: the ``_target_`` of the image configs in ``conf/data/``.

Data come from :mod:`sbrun.data.images` (``(n, C, H, W)`` in ``[-1, 1]``); ``root`` is
``data.root``, else ``$SBRUN_DATA_ROOT``; nothing is downloaded unless ``download=true``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sbrun.data.distributions import Problem
from sbrun.errors import ConfigError


def _load(dataset: str, root: str | None, max_train: int | None, max_test: int | None,
          seed: int, download: bool, options: dict | None):
    from sbrun.data.images import LOADERS

    if dataset not in LOADERS:
        raise ConfigError(f"unknown image data set '{dataset}'; valid: {sorted(LOADERS)}")
    kwargs = dict(root=root, max_train=max_train, max_test=max_test, seed=seed, **(options or {}))
    if download:
        if dataset == "celeba":
            raise ConfigError("celeba cannot be downloaded here: put img_align_celeba/ under "
                              "data.root (see sbrun/data/images.py)")
        kwargs["download"] = True
    return LOADERS[dataset](**kwargs)


def image(target: str, source: str | None = None, root: str | None = None,
          max_train: int | None = None, max_test: int | None = None, seed: int = 0,
          download: bool = False, target_options: dict | None = None,
          source_options: dict | None = None, name: str | None = None) -> Problem:
    """``source -> target`` between two image sets (unpaired), or generative when
    ``source`` is ``None`` (the source is the method's prior).

    Args:
        target, source: keys of :data:`sbrun.data.images.LOADERS` (mnist, fashion_mnist,
            emnist, celeba).
        max_train, max_test: cap the rows kept of each set (seeded subset), to keep CPU
            runs small; ``None`` keeps all.
        target_options, source_options: extra loader arguments (``split`` of EMNIST,
            ``size``/``crop``/``hflip`` of CelebA).
    """
    tgt = _load(target, root, max_train, max_test, seed, download, target_options)
    src = None
    if source is not None:
        src = _load(source, root, max_train, max_test, seed, download, source_options)
    return Problem(name or (f"{source}2{target}" if source else target), tgt, src)


def mnist_classes(root: str | None = None, classes: Sequence[int] = tuple(range(10)),
                  max_train: int | None = None, max_test: int | None = None, seed: int = 0,
                  name: str = "mnist_classes") -> Problem:
    """MNIST digits as K separate marginals (for multimarginal methods).

    A :class:`Problem` holds one source and one target, so the K marginals live in
    ``problem.extra["marginals"]`` (a list of ``ImageSet``, in the order of ``classes``,
    also in ``extra["classes"]``); ``target`` is the first class and ``source`` is
    ``None``, so a two-marginal method sees a generative problem on that class.
    """
    from sbrun.data.images import mnist_class_marginals

    if len(classes) < 1:
        raise ConfigError("mnist_classes: data.classes is empty")
    marginals = mnist_class_marginals(root, classes, max_train=max_train, max_test=max_test,
                                      seed=seed)
    return Problem(name, marginals[0], None,
                   extra={"marginals": marginals, "classes": [int(c) for c in classes]})
