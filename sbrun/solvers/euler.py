"""Euler (ODE, order 1) and Euler–Maruyama (SDE, strong order 1/2, weak order 1)."""

from __future__ import annotations

import torch
from torch import Tensor

from sbrun.solvers.base import Diffusion, Drift, SolveResult, StepContext, integrate


def euler_step(ctx: StepContext, t: Tensor, t_next: Tensor, h: Tensor, x: Tensor) -> Tensor:
    """``x + h f(t, x)``, plus ``g(t) sqrt(h) z`` when the step is noisy (Euler–Maruyama)."""
    x = x + h * ctx.drift(t, x)
    if ctx.noisy:
        x = x + ctx.g(t, x) * h.abs().sqrt() * ctx.randn(x)
    return x


def euler(drift: Drift, x: Tensor, grid: Tensor, *, diffusion: Diffusion | None = None,
          generator: torch.Generator | None = None, callback=None,
          keep: int | None = None) -> SolveResult:
    """Explicit Euler for ``dx = drift(t, x) dt``: ``x_{k+1} = x_k + h_k drift(t_k, x_k)``."""
    return integrate(euler_step, 1, drift, x, grid, callback=callback, keep=keep)


def euler_maruyama(drift: Drift, x: Tensor, grid: Tensor, *, diffusion: Diffusion | None = None,
                   generator: torch.Generator | None = None, callback=None,
                   keep: int | None = None, noise_last_step: bool = True) -> SolveResult:
    """Euler–Maruyama for ``dx = f dt + g dW``: ``x_{k+1} = x_k + h f + g sqrt(h) z``.

    ``noise_last_step=False`` returns the mean of the last step (a common denoising
    trick for diffusion samplers); without a diffusion this is plain Euler.
    """
    return integrate(euler_step, 1, drift, x, grid, diffusion=diffusion, generator=generator,
                     callback=callback, keep=keep, noise_last_step=noise_last_step)
