"""Held-out pairs of draws and the all-pairs W2 table of a transport between marginals.

:func:`heldout_halves` gives the two independent held-out sets behind every W2 floor (the
evaluator's, the multimarginal table's); :func:`pair_table` scores a transport between
every ordered pair of marginals against those sets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from sbrun.data.distributions import Distribution, Empirical


def heldout_halves(dist: Distribution, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Two independent held-out sets of equal size (at most ``n`` each).

    An empirical test set is split into disjoint halves, so the floor is honest; any other
    distribution gives ``dist.heldout(n, seed)`` and ``dist.heldout(n, seed + 1)``.
    """
    if isinstance(dist, Empirical):
        m = min(n, dist.test.shape[0] // 2)
        perm = torch.randperm(dist.test.shape[0], generator=torch.Generator().manual_seed(seed))
        return dist.test[perm[:m]], dist.test[perm[m: 2 * m]]
    return dist.heldout(n, seed), dist.heldout(n, seed + 1)


def pair_table(move: Callable[[Tensor, int, int], Tensor], sets: Sequence[tuple[Tensor, Tensor]],
               n: int, seed: int = 0) -> dict[str, float]:
    """W2 of a transport for every ordered pair ``i != j`` of marginals.

    ``move(x, i, j)`` carries draws ``x`` of marginal ``i`` to marginal ``j``; ``sets[k]``
    are two held-out sets of marginal ``k`` (:func:`heldout_halves`): the second of ``i``
    is moved and compared with the first of ``j``, and the floor of ``j`` is W2 between its
    two sets. Keys ``w2_{i}to{j}``, ``w2_floor_{i}to{j}``, ``w2_ratio_{i}to{j}`` (model /
    floor) and ``w2_ratio_pairs_max``; every W2 subsamples to ``n`` points with ``seed``.
    """
    from sbrun.metrics.distances import w2

    def dist(a: Tensor, b: Tensor) -> float:
        return w2(a, b, max_points=n, generator=torch.Generator().manual_seed(seed))

    out: dict[str, float] = {}
    for j, target in enumerate(sets):
        floor = dist(*target)
        for i, source in enumerate(sets):
            if i == j:
                continue
            d = dist(move(source[1], i, j), target[0])
            out[f"w2_{i}to{j}"], out[f"w2_floor_{i}to{j}"] = d, floor
            out[f"w2_ratio_{i}to{j}"] = d / max(floor, 1e-12)
    ratios = [v for k, v in out.items() if k.startswith("w2_ratio_")]
    if ratios:
        out["w2_ratio_pairs_max"] = max(ratios)
    return out
