"""Path energy against closed forms: a constant velocity ``c`` moves every point by ``c``
with kinetic energy ``|c|^2``, which is also ``W2^2`` between the cloud and its shift."""

import pytest
import torch

from sbrun.metrics.path_energy import PathEnergy, euler_energy


def test_constant_velocity_is_the_straight_ot_path():
    c = torch.tensor([0.5, -2.0, 1.0])
    x0 = torch.randn(200, 3, generator=torch.Generator().manual_seed(0))
    x1, energy = euler_energy(lambda t, x: c.expand_as(x), x0, steps=10)
    assert torch.allclose(x1, x0 + c, atol=1e-6)
    assert torch.allclose(energy, torch.full((200,), float(c.pow(2).sum()), dtype=torch.float64))
    out = PathEnergy(steps=10, points=200)(lambda t, x: c.expand_as(x), x0, x0 + c)
    assert out["ot_cost"] == pytest.approx(5.25, rel=1e-6)
    assert out["path_energy"] == pytest.approx(5.25, rel=1e-6)
    assert out["normalized_path_energy"] < 1e-6


def test_a_detour_costs_more_than_the_ot_cost():
    """``v(t, x) = c + a cos(2 pi t)`` ends at the same shift but spends ``|c|^2 + |a|^2 / 2``."""
    c, a = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    x0 = torch.randn(100, 2, generator=torch.Generator().manual_seed(1))
    drift = lambda t, x: (c + a * torch.cos(2 * torch.pi * t)[:, None]).expand_as(x)  # noqa: E731
    out = PathEnergy(steps=400, points=100)(drift, x0, x0 + c)
    assert out["path_energy"] == pytest.approx(1.0 + 2.0, rel=1e-2)
    assert out["normalized_path_energy"] == pytest.approx(2.0, rel=2e-2)
    assert PathEnergy(steps=0, points=10)(drift, x0, x0) == {}
