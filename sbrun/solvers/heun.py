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

from sbrun.solvers.base import Diffusion, Drift, PathRecorder, SolveResult, step_times


@torch.no_grad()
def heun(
    drift: Drift,
    x: Tensor,
    grid: Tensor,
    *,
    diffusion: Diffusion | None = None,
    generator: torch.Generator | None = None,
    callback=None,
    keep: int | None = None,
) -> SolveResult:
    """Heun for ``dx = drift(t, x) dt``; 2 drift evaluations per step."""
    ts, hs = step_times(grid, x)
    rec = PathRecorder(keep)
    rec(x)
    for k, h in enumerate(hs):
        b = x.shape[0]
        d1 = drift(ts[k].expand(b), x)  # slope at the start
        d2 = drift(ts[k + 1].expand(b), x + h * d1)  # slope at the Euler prediction
        x = x + 0.5 * h * (d1 + d2)
        rec(x)
        if callback is not None:
            callback({"k": k, "t": ts[k + 1], "x": x})
    return SolveResult(x=x, nfe=2 * len(hs), t=ts, path=rec.result())


@torch.no_grad()
def heun_sde(
    drift: Drift,
    x: Tensor,
    grid: Tensor,
    *,
    diffusion: Diffusion | None = None,
    generator: torch.Generator | None = None,
    callback=None,
    keep: int | None = None,
    noise_last_step: bool = True,
) -> SolveResult:
    """Stochastic Heun for ``dx = f dt + g(t) dW``; without a diffusion it is :func:`heun`.

    ``x~ = x + h f(t, x) + g(t) dW``; ``x' = x + h/2 (f(t, x) + f(t', x~)) + (g(t) + g(t'))/2 dW``.
    ``noise_last_step=False`` makes the last step a plain Heun step (a denoising step).
    """
    ts, hs = step_times(grid, x)
    rec = PathRecorder(keep)
    rec(x)
    view = (-1,) + (1,) * (x.ndim - 1)
    for k, h in enumerate(hs):
        b = x.shape[0]
        t, t_next = ts[k].expand(b), ts[k + 1].expand(b)
        noisy = diffusion is not None and (noise_last_step or k < len(hs) - 1)
        dw = torch.zeros_like(x)
        g1 = g2 = 0.0
        if noisy:
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            dw = h.abs().sqrt() * z
            g1 = diffusion(t).to(x.dtype).reshape(view)
            g2 = diffusion(t_next).to(x.dtype).reshape(view)
        d1 = drift(t, x)
        d2 = drift(t_next, x + h * d1 + g1 * dw)
        x = x + 0.5 * h * (d1 + d2) + 0.5 * (g1 + g2) * dw
        rec(x)
        if callback is not None:
            callback({"k": k, "t": ts[k + 1], "x": x})
    return SolveResult(x=x, nfe=2 * len(hs), t=ts, path=rec.result())
