"""The classical Runge–Kutta scheme (order 4) for ``dx = drift(t, x) dt``."""

from __future__ import annotations

import torch
from torch import Tensor

from sbrun.solvers.base import Diffusion, Drift, PathRecorder, SolveResult


@torch.no_grad()
def rk4(
    drift: Drift,
    x: Tensor,
    grid: Tensor,
    *,
    diffusion: Diffusion | None = None,
    generator: torch.Generator | None = None,
    callback=None,
    keep: int | None = None,
) -> SolveResult:
    """RK4 on ``grid``; 4 drift evaluations per step."""
    ts = grid.to(x.device, x.dtype)
    rec = PathRecorder(keep)
    rec(x)
    n = len(ts) - 1
    for k in range(n):
        h, b = ts[k + 1] - ts[k], x.shape[0]
        t, t_mid, t_next = ts[k].expand(b), (ts[k] + h / 2).expand(b), ts[k + 1].expand(b)
        k1 = drift(t, x)
        k2 = drift(t_mid, x + h / 2 * k1)
        k3 = drift(t_mid, x + h / 2 * k2)
        k4 = drift(t_next, x + h * k3)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        rec(x)
        if callback is not None:
            callback({"k": k, "t": ts[k + 1], "x": x})
    return SolveResult(x=x, nfe=4 * n, t=ts, path=rec.result())
