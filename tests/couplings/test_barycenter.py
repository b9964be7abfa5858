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
