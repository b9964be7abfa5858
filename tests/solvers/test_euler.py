"""Solvers on problems with exact solutions; convergence order as a log-log slope."""

import math

import pytest
import torch

from sbrun.errors import ConfigError
from sbrun.solvers import get_solver, time_grid


def linear_drift(a):
    return lambda t, x: a * x + torch.sin(2 * math.pi * t)[:, None]


def exact_linear(a, x0):
    """Solution of x' = a x + sin(2 pi t) at t = 1 (variation of constants)."""
    w = 2 * math.pi
    c = (a * math.sin(0) + w * math.cos(0)) / (a**2 + w**2)
    part1 = -(a * math.sin(w) + w * math.cos(w)) / (a**2 + w**2)
    return (x0 + c) * math.exp(a) + part1


def test_euler_first_order_convergence():
    a, x0 = -1.3, torch.tensor([[0.7]], dtype=torch.float64)
    exact = exact_linear(a, 0.7)
    steps = [16, 32, 64, 128, 256]
    errs = []
    for n in steps:
        res = get_solver("euler")(linear_drift(a), x0, time_grid(n).double())
        assert res.nfe == n
        errs.append(abs(res.x.item() - exact))
    slope = (math.log(errs[-1]) - math.log(errs[0])) / (math.log(steps[-1]) - math.log(steps[0]))
    assert -1.15 < slope < -0.85, slope


def test_euler_maruyama_ou_moments():
    """dX = -theta X dt + s dW from x0: mean x0 e^{-theta}, var s^2 (1 - e^{-2theta}) / (2theta)."""
    theta, s, n = 1.0, 0.8, 100_000
    x0 = torch.full((n, 1), 2.0, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    res = get_solver("euler_maruyama")(
        lambda t, x: -theta * x, x0, time_grid(200).double(),
        diffusion=lambda t: torch.full_like(t, s), generator=g,
    )
    mean, var = 2 * math.exp(-theta), s**2 * (1 - math.exp(-2 * theta)) / (2 * theta)
    assert abs(res.x.mean().item() - mean) < 0.01
    assert abs(res.x.var().item() - var) / var < 0.03


def test_path_is_recorded_for_kept_rows():
    res = get_solver("euler")(lambda t, x: torch.ones_like(x), torch.zeros(10, 2), time_grid(4),
                              keep=3)
    assert res.path.shape == (3, 5, 2)
    torch.testing.assert_close(res.path[:, -1], torch.ones(3, 2))


def test_ode_solver_refuses_sde():
    with pytest.raises(ConfigError, match="ODEs only"):
        get_solver("euler")(lambda t, x: x, torch.zeros(2, 1), time_grid(2),
                            diffusion=lambda t: torch.ones_like(t))


def test_bad_names_and_steps():
    with pytest.raises(ConfigError, match="unknown solver 'rk9'.*euler"):
        get_solver("rk9")
    with pytest.raises(ConfigError, match="solver.steps must be >= 1"):
        time_grid(0)
