"""Problems by name: the ``_target_`` of every ``conf/data/*.yaml``.

Scale: every 2D toy is on a unit-ish scale (see each sampler's docstring for its std);
``scale`` multiplies both ends, so sigmas and W2 keep a fixed meaning.
"""

from __future__ import annotations

from sbrun.data.distributions import Problem


def toy(target: str, source: str | None = None, scale: float = 1.0, name: str | None = None) -> Problem:
    """A 2D problem: ``source -> target`` (``source=None``: generative from the prior)."""
    from sbrun.data.toy2d import make_toy

    src = make_toy(source, scale) if source else None
    tgt = make_toy(target, scale)
    return Problem(name or (f"{source}2{target}" if source else target), tgt, src)


def npz(target_path: str, source_path: str | None = None, key: str = "x", paired: bool = False,
        test_fraction: float = 0.2, seed: int = 0, name: str = "npz") -> Problem:
    """The user's point clouds: ``.npz`` files holding an array ``key`` of shape ``(n, d)``.

    ``paired=true``: row ``i`` of the source file goes with row ``i`` of the target file.
    """
    from sbrun.data.files import load_npz, load_paired_npz

    if source_path and paired:
        src, tgt = load_paired_npz(source_path, target_path, key=key,
                                   test_fraction=test_fraction, seed=seed)
        return Problem(name, tgt, src, paired=True)
    tgt = load_npz(target_path, key=key, test_fraction=test_fraction, seed=seed, name="target")
    src = load_npz(source_path, key=key, test_fraction=test_fraction, seed=seed, name="source") \
        if source_path else None
    return Problem(name, tgt, src)


def gaussian(dim: int = 2, seed: int = 0, mean0=None, cov0=None, mean1=None, cov1=None,
             generative: bool = False, cond: float = 10.0,
             name: str = "gaussian2gaussian") -> Problem:
    """Gaussian to Gaussian in ``dim`` dimensions; random SPD covariances from ``seed`` with
    condition number ``cond`` (``cond=1``: identities, the DSBM paper's Gaussian problem).

    The problem declares its truth, a :class:`~sbrun.data.truth.GaussianPair`, so runs
    report their error against the closed-form Schrödinger bridge.
    """
    from sbrun.data.gaussians import gaussian_pair
    from sbrun.data.truth import GaussianPair

    g0, g1 = gaussian_pair(dim, seed, mean0=mean0, cov0=cov0, mean1=mean1, cov1=cov1, cond=cond)
    return Problem(name, g1, None if generative else g0, truth=GaussianPair(g0, g1))


def mixture1d(source_means=(-1.0, 1.0), source_stds=(0.3, 0.3), source_weights=(0.5, 0.5),
              target_means=(0.0,), target_stds=(0.5,), target_weights=(1.0,),
              name: str = "mixture1d") -> Problem:
    """1D Gaussian mixtures on both ends (the 1D plans of seed 001, Figs. 6–7)."""
    from sbrun.data.gaussians import GaussianMixture

    def gmm(means, stds, weights, side):
        return GaussianMixture(list(weights), [[float(m)] for m in means], list(stds),
                               name=f"{name}/{side}")

    return Problem(name, gmm(target_means, target_stds, target_weights, "target"),
                   gmm(source_means, source_stds, source_weights, "source"))
