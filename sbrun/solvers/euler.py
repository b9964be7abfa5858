"""Euler (ODE, order 1) and Euler–Maruyama (SDE, strong order 1/2, weak order 1)."""

from __future__ import annotations

import torch
from torch import Tensor

from sbrun.solvers.base import Diffusion, Drift, PathRecorder, SolveResult, step_times


@torch.no_grad()
def euler(
    drift: Drift,
    x: Tensor,
    grid: Tensor,
    *,
    diffusion: Diffusion | None = None,
    generator: torch.Generator | None = None,
    callback=None,
    keep: int | None = None,
) -> SolveResult:
    """Explicit Euler for ``dx = drift(t, x) dt``: ``x_{k+1} = x_k + h_k drift(t_k, x_k)``."""
    ts, hs = step_times(grid, x)
    rec = PathRecorder(keep)
    rec(x)
    for k, h in enumerate(hs):
        t = ts[k].expand(x.shape[0])
        x = x + h * drift(t, x)
        rec(x)
        if callback is not None:
            callback({"k": k, "t": ts[k + 1], "x": x})
    return SolveResult(x=x, nfe=len(hs), t=ts, path=rec.result())


@torch.no_grad()
def euler_maruyama(
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
    """Euler–Maruyama for ``dx = f dt + g dW``: ``x_{k+1} = x_k + h f + g sqrt(h) z``.

    ``noise_last_step=False`` returns the mean of the last step (a common denoising
    trick for diffusion samplers); without a diffusion this is plain Euler.
    """
    ts, hs = step_times(grid, x)
    rec = PathRecorder(keep)
    rec(x)
    view = (-1,) + (1,) * (x.ndim - 1)
    for k, h in enumerate(hs):
        t = ts[k].expand(x.shape[0])
        x = x + h * drift(t, x)
        last = k == len(hs) - 1
        if diffusion is not None and (noise_last_step or not last):
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            x = x + diffusion(t).to(x.dtype).reshape(view) * h.abs().sqrt() * z
        rec(x)
        if callback is not None:
            callback({"k": k, "t": ts[k + 1], "x": x})
    return SolveResult(x=x, nfe=len(hs), t=ts, path=rec.result())
