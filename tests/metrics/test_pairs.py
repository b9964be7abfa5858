"""Held-out halves and the all-pairs W2 table, checked against POT directly."""

import math

import numpy as np
import ot
import pytest
import torch

from sbrun.data.distributions import Empirical, StandardGaussian
from sbrun.metrics.pairs import heldout_halves, pair_table

F64 = torch.float64


def pot_w2(x: torch.Tensor, y: torch.Tensor) -> float:
    """Exact W2 of two uniform empirical measures by ``ot.emd2`` on squared distances."""
    M = ot.dist(x.double().numpy(), y.double().numpy())  # squared Euclidean
    a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
    return math.sqrt(ot.emd2(a, b, M))


def test_empirical_halves_are_disjoint_reproducible_and_from_the_test_set():
    rows = torch.arange(25.0)[:, None]  # every test row is unique: its value names it
    dist = Empirical(torch.zeros(5, 1), rows)
    a, b = heldout_halves(dist, 100, seed=3)
    assert a.shape == b.shape == (12, 1)  # min(n, 25 // 2)
    assert not set(a[:, 0].tolist()) & set(b[:, 0].tolist())
    assert set(a[:, 0].tolist()) | set(b[:, 0].tolist()) <= set(range(25))
    a2, b2 = heldout_halves(dist, 100, seed=3)
    assert torch.equal(a, a2) and torch.equal(b, b2)
    a3, _ = heldout_halves(dist, 100, seed=4)
    assert not torch.equal(a, a3)
    small, _ = heldout_halves(dist, 4, seed=3)
    assert small.shape == (4, 1)


def test_halves_of_a_sampler_are_its_two_heldout_draws():
    dist = StandardGaussian((2,))
    a, b = heldout_halves(dist, 50, seed=9)
    assert torch.equal(a, dist.heldout(50, 9)) and torch.equal(b, dist.heldout(50, 10))
    assert not torch.equal(a, b)


def test_pair_table_matches_pot_for_a_known_transport():
    g = torch.Generator().manual_seed(0)
    centres = [torch.tensor([0.0, 0.0]), torch.tensor([3.0, 0.0]), torch.tensor([0.0, -2.0])]
    sets = [(torch.randn(30, 2, generator=g, dtype=F64) + c, torch.randn(30, 2, generator=g, dtype=F64) + c)
            for c in centres]
    calls = []

    def move(x, i, j):  # a translation between the centres; half of the shift for 0 -> 2
        calls.append((i, j))
        return x + (centres[j] - centres[i]) * (0.5 if (i, j) == (0, 2) else 1.0)

    out = pair_table(move, sets, n=30)
    assert sorted(calls) == [(i, j) for i in range(3) for j in range(3) if i != j]
    for i in range(3):
        for j in range(3):
            if i == j:
                continue
            moved = sets[i][1] + (centres[j] - centres[i]) * (0.5 if (i, j) == (0, 2) else 1.0)
            assert out[f"w2_{i}to{j}"] == pytest.approx(pot_w2(moved, sets[j][0]), rel=1e-9)
            floor = pot_w2(*sets[j])
            assert out[f"w2_floor_{i}to{j}"] == pytest.approx(floor, rel=1e-9)
            assert out[f"w2_ratio_{i}to{j}"] == pytest.approx(out[f"w2_{i}to{j}"] / floor)
    # the half-way transport lands 1 away from marginal 2: the worst ratio is that pair's
    assert out["w2_ratio_pairs_max"] == out["w2_ratio_0to2"] > 1.5
    assert len(out) == 3 * 6 + 1


def test_pair_table_of_one_marginal_is_empty():
    x = torch.zeros(4, 2)
    assert pair_table(lambda x, i, j: x, [(x, x)], n=4) == {}
