"""Adaptive-step ODE solvers through torchdiffeq (Chen et al. 2018): dopri5 by default.

The step size is chosen by the embedded error estimate against ``rtol``/``atol``;
``grid`` only fixes the times where the path is reported (interpolated, not stepped to).
NFE counts every drift evaluation, rejected steps included.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sbrun.errors import ConfigError
from sbrun.solvers.base import Drift, SolveResult

ADAPTIVE_SCHEMES = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")


def check_scheme(scheme: str) -> None:
    if scheme not in ADAPTIVE_SCHEMES:
        raise ConfigError(f"unknown adaptive solver.scheme '{scheme}'; valid: "
                          f"{', '.join(ADAPTIVE_SCHEMES)}")


def counted(drift: Drift, batch: int) -> tuple:
    """torchdiffeq's ``f(t_scalar, x)`` over ``drift(t: (B,), x)`` and a call counter."""
    counter = [0]

    def f(t: Tensor, x: Tensor) -> Tensor:
        counter[0] += 1
        return drift(t.to(x.dtype).expand(batch), x)

    return f, counter


@torch.no_grad()
def adaptive(drift: Drift, x: Tensor, grid: Tensor, *, scheme: str = "dopri5", rtol: float = 1e-5,
             atol: float = 1e-5, callback=None, keep: int | None = None, **_noise) -> SolveResult:
    """Integrate ``dx = drift(t, x) dt`` from ``grid[0]`` to ``grid[-1]`` adaptively.

    ``_noise`` (``diffusion``, ``generator``) is what every solver is handed: an ODE has none.
    """
    from torchdiffeq import odeint

    check_scheme(scheme)
    ts = grid.to(x.device, x.dtype)
    dense = bool(keep) or callback is not None
    f, counter = counted(drift, x.shape[0])
    # step_t: land on the end time instead of stepping past it (drifts may be undefined there)
    out = odeint(f, x, ts if dense else ts[[0, -1]], rtol=rtol, atol=atol, method=scheme,
                 options={"step_t": ts[-1:]})
    if callback is not None:
        for k in range(1, len(ts)):
            callback({"k": k - 1, "t": ts[k], "x": out[k]})
    path = out[:, :keep].transpose(0, 1).clone() if keep else None
    return SolveResult(x=out[-1], nfe=counter[0], t=ts, path=path)
