"""Heun's method: the ODE scheme (order 2) and its stochastic variant for additive noise.

ODE (explicit trapezoid; Karras et al. 2022, Alg. 1): predict with Euler, correct with
the mean of the two slopes. SDE ``dx = f dt + g(t) dW`` with ``g`` independent of ``x``
(the reverse SDEs of diffusion models): the same predictor-corrector on the drift and
the trapezoid on ``g``, driven by one Brownian increment per step (strong order 1 for
additive noise; Kloeden & Platen 1992, sec. 11.1; Rößler 2010).
"""

from __future__ import annotations

import torch
from torch import Tensor

from sbrun.solvers.base import Diffusion, Drift, SolveResult, StepContext, integrate


def heun_step(ctx: StepContext, t: Tensor, t_next: Tensor, h: Tensor, x: Tensor) -> Tensor:
    """``x~ = x + h f(t, x) + g(t) dW``; ``x' = x + h/2 (f(t, x) + f(t', x~)) + (g(t) +
    g(t'))/2 dW`` (``dW = 0`` on a noise-free step: the ODE's trapezoid); 2 drift calls."""
    d1 = ctx.drift(t, x)  # slope at the start
    if not ctx.noisy:
        return x + 0.5 * h * (d1 + ctx.drift(t_next, x + h * d1))
    dw = h.abs().sqrt() * ctx.randn(x)
    g1, g2 = ctx.g(t, x), ctx.g(t_next, x)
    d2 = ctx.drift(t_next, x + h * d1 + g1 * dw)  # slope at the Euler prediction
    return x + 0.5 * h * (d1 + d2) + 0.5 * (g1 + g2) * dw


def heun(drift: Drift, x: Tensor, grid: Tensor, *, diffusion: Diffusion | None = None,
         generator: torch.Generator | None = None, callback=None,
         keep: int | None = None) -> SolveResult:
    """Heun for ``dx = drift(t, x) dt``; 2 drift evaluations per step."""
    return integrate(heun_step, 2, drift, x, grid, callback=callback, keep=keep)


def heun_sde(drift: Drift, x: Tensor, grid: Tensor, *, diffusion: Diffusion | None = None,
             generator: torch.Generator | None = None, callback=None,
             keep: int | None = None, noise_last_step: bool = True) -> SolveResult:
    """Stochastic Heun for ``dx = f dt + g(t) dW``; without a diffusion it is :func:`heun`.
    ``noise_last_step=False`` makes the last step a plain Heun step (a denoising step)."""
    return integrate(heun_step, 2, drift, x, grid, diffusion=diffusion, generator=generator,
                     callback=callback, keep=keep, noise_last_step=noise_last_step)
