"""Solver registry ``{name: Solver}``; each declares its order and whether it is stochastic."""

from sbrun.errors import ConfigError
from sbrun.solvers.base import Solver, SolveResult, time_grid
from sbrun.solvers.euler import euler, euler_maruyama

SOLVERS: dict[str, Solver] = {
    "euler": Solver(euler, order=1.0, stochastic=False),
    "euler_maruyama": Solver(euler_maruyama, order=0.5, stochastic=True),
}


def get_solver(name: str) -> Solver:
    """Look a solver up by name; a clear error lists the valid names."""
    try:
        return SOLVERS[name]
    except KeyError:
        raise ConfigError(f"unknown solver '{name}'; valid: {', '.join(sorted(SOLVERS))}") from None


__all__ = ["SOLVERS", "Solver", "SolveResult", "get_solver", "time_grid"]
