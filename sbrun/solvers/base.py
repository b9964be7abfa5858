"""Solver protocol: stateless functions ``solve(drift, x, grid, *, diffusion, generator, callback)``.

A drift is ``drift(t: (B,), x: (B, *D)) -> (B, *D)``; a diffusion is
``diffusion(t: (B,)) -> (B,)`` (a scalar noise level per sample) or ``None`` for an ODE.
Every solver counts drift evaluations (NFE) and returns a :class:`SolveResult`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from sbrun.errors import ConfigError

Drift = Callable[[Tensor, Tensor], Tensor]
Diffusion = Callable[[Tensor], Tensor]


@dataclass
class SolveResult:
    """``x: (B, *D)`` end point; ``path: (n_keep, n_times, *D)`` or ``None``; ``t: (n_times,)``."""

    x: Tensor
    nfe: int
    t: Tensor
    path: Tensor | None = None


@dataclass(frozen=True)
class Solver:
    """A registered solver: the function, its strong/weak order, and what it supports."""

    fn: Callable[..., SolveResult]
    order: float
    stochastic: bool
    deterministic_ok: bool = True

    def __call__(self, drift: Drift, x: Tensor, grid: Tensor, **kw) -> SolveResult:
        if kw.get("diffusion") is not None and not self.stochastic:
            raise ConfigError(
                f"solver '{self.fn.__name__}' integrates ODEs only, but the method samples an "
                "SDE: use solver=euler_maruyama (or another stochastic solver)"
            )
        return self.fn(drift, x, grid, **kw)


def time_grid(steps: int, t0: float = 0.0, t1: float = 1.0, device=None) -> Tensor:
    """Uniform grid of ``steps`` intervals on ``[t0, t1]`` -> ``(steps + 1,)``."""
    if steps < 1:
        raise ConfigError(f"solver.steps must be >= 1, got {steps}")
    return torch.linspace(t0, t1, steps + 1, device=device)


def step_times(grid: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """``grid`` on ``x``'s device and dtype, and its step sizes ``(len(grid) - 1,)``."""
    ts = grid.to(x.device, x.dtype)
    return ts, torch.diff(ts)


class PathRecorder:
    """Keeps the first ``keep`` rows of every state (for trajectory figures)."""

    def __init__(self, keep: int | None):
        self.keep = keep
        self.states: list[Tensor] = []

    def __call__(self, x: Tensor) -> None:
        if self.keep:
            self.states.append(x[: self.keep].detach().clone())

    def result(self) -> Tensor | None:
        return torch.stack(self.states, 1) if self.states else None
