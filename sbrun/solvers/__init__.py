"""Solver registry ``{name: Solver}``; each declares its order and whether it is stochastic.

Some solvers need more than a drift: ``ancestral`` a Gaussian reverse ``kernel``, ``pc`` the
``score`` for its Langevin corrector. A method that can give them lists them in
``solver_extras`` and passes them through ``Method.transport`` (:func:`solver_extras`
keeps those the solver takes); :func:`check_solver` refuses a mismatch before training
(the evaluator calls it, so that every config still builds).
Options from ``conf/solver`` (``scheme``, ``rtol``, ``snr``, ...) are bound by
:func:`configure`.
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from functools import partial, update_wrapper

from sbrun.errors import ConfigError
from sbrun.solvers.adaptive import ADAPTIVE_SCHEMES, adaptive
from sbrun.solvers.ancestral import ancestral
from sbrun.solvers.base import Solver, SolveResult, time_grid
from sbrun.solvers.euler import euler, euler_maruyama
from sbrun.solvers.heun import heun, heun_sde
from sbrun.solvers.ode import ode
from sbrun.solvers.pc import pc
from sbrun.solvers.rk4 import rk4

# Declared orders (checked by tests/solvers/test_orders.py): ODE schemes their classical
# order; stochastic schemes the weak order of the moments under additive noise g(t) dW.
# ``ode``/``adaptive`` report the order of their configured ``scheme`` (see configure).
SCHEME_ORDERS: dict[str, float] = {"euler": 1.0, "heun": 2.0, "rk4": 4.0, "dopri5": 5.0,
                                   "dopri8": 8.0, "bosh3": 3.0, "fehlberg2": 2.0,
                                   "adaptive_heun": 2.0}

SOLVERS: dict[str, Solver] = {
    "euler": Solver(euler, order=1.0, stochastic=False),
    "euler_maruyama": Solver(euler_maruyama, order=1.0, stochastic=True),
    "heun": Solver(heun, order=2.0, stochastic=False),
    "heun_sde": Solver(heun_sde, order=2.0, stochastic=True),
    "rk4": Solver(rk4, order=4.0, stochastic=False),
    "adaptive": Solver(adaptive, order=SCHEME_ORDERS["dopri5"], stochastic=False),
    "ode": Solver(ode, order=SCHEME_ORDERS["rk4"], stochastic=False),
    "pc": Solver(pc, order=1.0, stochastic=True),  # its Euler–Maruyama predictor's
    "ancestral": Solver(ancestral, order=1.0, stochastic=True),
}

# What a solver needs from the method beyond drift and diffusion.
REQUIRES: dict[str, tuple[str, ...]] = {"ancestral": ("kernel",), "pc": ("score",)}


def get_solver(name: str) -> Solver:
    """Look a solver up by name; a clear error lists the valid names."""
    try:
        return SOLVERS[name]
    except KeyError:
        raise ConfigError(f"unknown solver '{name}'; valid: {', '.join(sorted(SOLVERS))}") from None


def _params(solver: Solver) -> set[str]:
    return set(inspect.signature(solver.fn).parameters)


def configure(solver: Solver, **options) -> Solver:
    """``solver`` with the ``options`` its function takes bound (others do not apply to it);
    a ``scheme`` option sets the declared order to the scheme's (an unknown one is refused)."""
    kw = {k: v for k, v in options.items() if k in _params(solver)}
    if not kw:
        return solver
    order = solver.order
    if "scheme" in kw:
        valid = SCHEME_ORDERS if solver.fn is ode else ADAPTIVE_SCHEMES
        if kw["scheme"] not in valid:
            raise ConfigError(f"unknown solver.scheme '{kw['scheme']}' for solver="
                              f"{solver.fn.__name__}; valid: {', '.join(valid)}")
        order = SCHEME_ORDERS[kw["scheme"]]
    return replace(solver, fn=update_wrapper(partial(solver.fn, **kw), solver.fn), order=order)


def solver_extras(solver: Solver, **available) -> dict:
    """The keyword arguments in ``available`` (kernel, score, ...) that ``solver`` takes."""
    params = _params(solver)
    return {k: v for k, v in available.items() if k in params}


def check_solver(solver: Solver, method) -> None:
    """Refuse a solver the method cannot feed (the evaluator calls it before training): one
    that needs what ``method`` does not declare in ``Method.solver_extras``, or an ODE solver
    for a method that declares ``samples_sde``."""
    name = solver.fn.__name__
    for need in REQUIRES.get(name, ()):
        if need not in method.solver_extras:
            what = {"kernel": "a discrete reverse chain (Gaussian kernel)",
                    "score": "the score of its marginals"}[need]
            raise ConfigError(f"solver={name} needs {what}, which method={method.name} does not "
                              "have (use method=ddpm or score-sde, or another solver)")
    if method.samples_sde and not solver.stochastic:
        raise ConfigError(f"solver={name} integrates ODEs only, but method={method.name} samples "
                          "an SDE: use a stochastic solver (euler_maruyama, heun_sde, pc) "
                          "or method.sampler=ode")


__all__ = ["SOLVERS", "SCHEME_ORDERS", "REQUIRES", "Solver", "SolveResult", "check_solver", "configure",
           "get_solver", "solver_extras", "time_grid"]
