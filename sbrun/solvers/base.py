"""Solver protocol: stateless functions ``solve(drift, x, grid, *, diffusion, generator, callback)``.

A drift is ``drift(t: (B,), x: (B, *D)) -> (B, *D)``; a diffusion is
``diffusion(t: (B,)) -> (B,)`` (a scalar noise level per sample) or ``None`` for an ODE.
Every solver counts drift evaluations (NFE) and returns a :class:`SolveResult`.

The fixed-grid schemes share one loop, :func:`integrate`: a scheme is a short step
function ``step(ctx, t, t_next, h, x) -> x_next`` (``t, t_next: (B,)``, ``h`` the step
size) with a declared number of drift evaluations per step; the loop handles the grid,
the recorded path, the callback, the NFE count and the noise-free last step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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
    """A registered solver: the function, its declared order and what it supports.

    ``order``: the global order of convergence on smooth problems, as checked by
    ``tests/solvers/test_orders.py`` (ODE schemes: the classical order; stochastic
    schemes: the weak order of the moments for the additive noise ``g(t) dW`` that every
    sbrun SDE has).
    """

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


@dataclass
class StepContext:
    """What a step function may use besides ``(t, t_next, h, x)``.

    ``noisy``: whether this step adds noise (``False`` without a diffusion and, with
    ``noise_last_step=False``, on the last step); ``extras``: solver-specific inputs
    (``kernel``, ``score``, ``snr``, ...).
    """

    drift: Drift
    diffusion: Diffusion | None
    generator: torch.Generator | None
    noisy: bool = False
    extras: dict = field(default_factory=dict)

    def randn(self, x: Tensor) -> Tensor:
        """Standard normal draws shaped like ``x`` from the solver's generator."""
        return torch.randn(x.shape, generator=self.generator, dtype=x.dtype).to(x.device)

    def g(self, t: Tensor, x: Tensor) -> Tensor:
        """The diffusion at ``t: (B,)`` broadcast against ``x: (B, *D)``."""
        return self.diffusion(t).to(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))


Step = Callable[[StepContext, Tensor, Tensor, Tensor, Tensor], Tensor]


@torch.no_grad()
def integrate(step: Step, nfe_per_step: int, drift: Drift, x: Tensor, grid: Tensor, *,
              diffusion: Diffusion | None = None, generator: torch.Generator | None = None,
              callback=None, keep: int | None = None, noise_last_step: bool = True,
              noise: bool | None = None, **extras) -> SolveResult:
    """Run ``step`` over ``grid`` from ``x: (B, *D)``: the one loop of the fixed-grid schemes.

    ``callback({"k", "t", "x"})`` is called after every step; ``keep`` rows of every state
    are recorded in ``SolveResult.path``; NFE is ``nfe_per_step * (len(grid) - 1)``.
    ``noise``: whether the steps draw noise (default: when there is a ``diffusion``).
    """
    ts, hs = step_times(grid, x)
    ctx = StepContext(drift, diffusion, generator, extras=extras)
    rec = PathRecorder(keep)
    rec(x)
    n, b = len(hs), x.shape[0]
    noise = diffusion is not None if noise is None else noise
    for k in range(n):
        ctx.noisy = noise and (noise_last_step or k < n - 1)
        x = step(ctx, ts[k].expand(b), ts[k + 1].expand(b), hs[k], x)
        rec(x)
        if callback is not None:
            callback({"k": k, "t": ts[k + 1], "x": x})
    return SolveResult(x=x, nfe=nfe_per_step * n, t=ts, path=rec.result())
