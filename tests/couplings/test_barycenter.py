"""Free-support W2 barycenters: with two clouds it is McCann's interpolation."""

import numpy as np
import pytest
import torch

from sbrun.couplings import solve_coupling
from sbrun.couplings.barycenter import free_support_barycenter, simplex_grid
from sbrun.errors import ConfigError
from sbrun.metrics.distances import w2


def test_two_cloud_barycenter_is_the_displacement_interpolation():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(120, 2, generator=g, dtype=torch.float64)
    b = torch.randn(120, 2, generator=g, dtype=torch.float64) * 0.5 + torch.tensor([3.0, 1.0])
    t = 0.3
    plan = solve_coupling(a, b, method="exact").plan
    j = plan.argmax(1)
    mccann = (1 - t) * a + t * b[j]  # the W2 geodesic at time t
    bary = free_support_barycenter([a, b], [1 - t, t], n_support=120, max_iter=100)
    assert w2(bary.double(), mccann) < 0.05 * w2(a, b)


def test_simplex_grid_and_bad_weights():
    grid = simplex_grid(3, 4)
    assert len(grid) == 15 and all(abs(w.sum() - 1) < 1e-12 and (w >= 0).all() for w in grid)
    x = torch.zeros(5, 2)
    with pytest.raises(ConfigError, match="summing to 1"):
        free_support_barycenter([x, x], np.array([0.7, 0.7]))


class _Shifted:
    """A 2D marginal: a standard normal scaled and shifted (``sample(n, generator)``)."""
    shape = (2,)

    def __init__(self, scale, shift):
        self.scale, self.shift = scale, torch.tensor(shift)

    def sample(self, n, generator=None):
        return torch.randn(n, 2, generator=generator) * self.scale + self.shift


def test_barycenter_metric_is_small_at_the_midpoint_and_one_at_an_end(monkeypatch):
    from types import SimpleNamespace

    import sbrun.couplings.barycenter as bary_mod
    from sbrun.methods.eot_figures import barycenter_metrics

    shapes = [_Shifted(1.0, [0.0, 0.0]), _Shifted(0.5, [3.0, 1.0]), _Shifted(0.7, [-2.0, 2.5])]
    eot = SimpleNamespace(plan_seed=0)
    gap = barycenter_metrics(eot, shapes, points=150)["barycenter_midpoint_gap"]
    assert 0 <= gap < 0.05
    # a "barycenter" that stays at the first shape is half a geodesic off on each side
    monkeypatch.setattr(bary_mod, "free_support_barycenter",
                        lambda clouds, w, n_support: clouds[w.index(0.5)])
    gap = barycenter_metrics(eot, shapes, points=150)["barycenter_midpoint_gap"]
    assert gap == pytest.approx(1.0, abs=1e-6)
