"""``solver=ode``: one front door for ODEs (probability flow, flows), by ``scheme``.

Fixed steps: ``euler`` (order 1), ``heun`` (2), ``rk4`` (4) on the ``solver.steps`` grid;
adaptive: any of :data:`~sbrun.solvers.adaptive.ADAPTIVE_SCHEMES` (torchdiffeq, with
``rtol``/``atol``). Every scheme reports its NFE.
"""

from __future__ import annotations

from torch import Tensor

from sbrun.errors import ConfigError
from sbrun.solvers.adaptive import ADAPTIVE_SCHEMES, adaptive
from sbrun.solvers.base import Drift, SolveResult
from sbrun.solvers.euler import euler
from sbrun.solvers.heun import heun
from sbrun.solvers.rk4 import rk4

FIXED_SCHEMES = {"euler": euler, "heun": heun, "rk4": rk4}


def ode(drift: Drift, x: Tensor, grid: Tensor, *, scheme: str = "rk4", rtol: float = 1e-5,
        atol: float = 1e-5, callback=None, keep: int | None = None, **_noise) -> SolveResult:
    """Integrate ``dx = drift(t, x) dt`` over ``grid`` with ``scheme``."""
    if scheme in FIXED_SCHEMES:
        return FIXED_SCHEMES[scheme](drift, x, grid, callback=callback, keep=keep)
    if scheme in ADAPTIVE_SCHEMES:
        return adaptive(drift, x, grid, callback=callback, keep=keep, scheme=scheme,
                        rtol=rtol, atol=atol)
    valid = ", ".join([*FIXED_SCHEMES, *ADAPTIVE_SCHEMES])
    raise ConfigError(f"unknown solver.scheme '{scheme}' for solver=ode; valid: {valid}")
