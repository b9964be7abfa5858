"""The classical Runge–Kutta scheme (order 4) for ``dx = drift(t, x) dt``."""

from __future__ import annotations

import torch
from torch import Tensor

from sbrun.solvers.base import Diffusion, Drift, SolveResult, StepContext, integrate


def rk4_step(ctx: StepContext, t: Tensor, t_next: Tensor, h: Tensor, x: Tensor) -> Tensor:
    """One RK4 step; 4 drift evaluations."""
    t_mid = t + h / 2
    k1 = ctx.drift(t, x)
    k2 = ctx.drift(t_mid, x + h / 2 * k1)
    k3 = ctx.drift(t_mid, x + h / 2 * k2)
    k4 = ctx.drift(t_next, x + h * k3)
    return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def rk4(drift: Drift, x: Tensor, grid: Tensor, *, diffusion: Diffusion | None = None,
        generator: torch.Generator | None = None, callback=None,
        keep: int | None = None) -> SolveResult:
    """RK4 on ``grid``; 4 drift evaluations per step."""
    return integrate(rk4_step, 4, drift, x, grid, callback=callback, keep=keep)
