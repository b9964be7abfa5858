"""Every registered solver converges at the order it declares, on closed-form problems.

ODE: ``x' = a x + sin(2 pi t)`` (variation of constants). SDE: the Ornstein–Uhlenbeck
process ``dX = -theta X dt + s(t) dW`` with time-dependent additive noise, whose mean and
variance at ``t = 1`` are closed-form; the weak error is measured on both moments.
"""

import math

import pytest
import torch

from sbrun.data.gaussians import Gaussian
from sbrun.solvers import SCHEME_ORDERS, SOLVERS, configure, get_solver, time_grid

A, X0 = -1.3, 0.7


def ode_drift(t, x):
    return A * x + torch.sin(2 * math.pi * t)[:, None]


def ode_exact() -> float:
    w = 2 * math.pi
    c = w / (A**2 + w**2)
    return (X0 + c) * math.exp(A) - (A * math.sin(w) + w * math.cos(w)) / (A**2 + w**2)


def slope(steps, errs) -> float:
    return math.log(errs[-1] / errs[0]) / math.log(steps[-1] / steps[0])


ODE_CASES = [("euler", {}), ("heun", {}), ("rk4", {})] + [("ode", {"scheme": s})
                                                         for s in ("euler", "heun", "rk4")]


@pytest.mark.parametrize("name,options", ODE_CASES)
def test_fixed_step_ode_orders(name, options):
    solver = configure(get_solver(name), **options)
    x = torch.tensor([[X0]], dtype=torch.float64)
    steps = [8, 16, 32, 64] if solver.order < 4 else [4, 8, 16]
    errs = [abs(solver(ode_drift, x, time_grid(n).double()).x.item() - ode_exact()) for n in steps]
    assert abs(slope(steps, errs) + solver.order) < 0.3, (errs, slope(steps, errs), solver.order)


@pytest.mark.parametrize("scheme", ["dopri5", "bosh3", "fehlberg2", "adaptive_heun", "dopri8"])
def test_adaptive_orders_are_the_tableaus(scheme):
    """Adaptive schemes take their own steps: the declared order is the tableau's (torchdiffeq's
    own declaration), and the error is within the tolerance."""
    from torchdiffeq._impl.odeint import SOLVERS as TDE

    solver = configure(get_solver("adaptive"), scheme=scheme, rtol=1e-8, atol=1e-8)
    assert solver.order == SCHEME_ORDERS[scheme] == TDE[scheme].order
    res = solver(ode_drift, torch.tensor([[X0]], dtype=torch.float64), time_grid(4).double())
    assert abs(res.x.item() - ode_exact()) < 1e-6


THETA, X_START = 1.0, 2.0


def s_of(t):
    return 0.5 + 0.5 * t


def ou_exact() -> Gaussian:
    """Mean ``x0 e^-theta`` and variance ``int_0^1 e^{-2 theta (1-u)} s(u)^2 du`` (quadrature)."""
    u = torch.linspace(0, 1, 200_001, dtype=torch.float64)
    var = torch.trapezoid(torch.exp(-2 * THETA * (1 - u)) * s_of(u) ** 2, u)
    return Gaussian(torch.tensor([[X_START * math.exp(-THETA)]]), std=var.sqrt())


def weak_error(solver, n: int, samples: int = 1_000_000) -> float:
    x = torch.full((samples, 1), X_START, dtype=torch.float64)
    g = torch.Generator().manual_seed(n)
    res = solver(lambda t, x: -THETA * x, x, time_grid(n).double(),
                 diffusion=s_of, generator=g)
    exact = ou_exact()
    return abs(res.x.mean().item() - exact.mean.item()) + abs(res.x.var().item() - exact.std.item() ** 2)


@pytest.mark.parametrize("name", ["euler_maruyama", "heun_sde"])
def test_sde_weak_orders(name):
    solver = get_solver(name)
    steps = [2, 4, 8]
    errs = [weak_error(solver, n) for n in steps]
    assert abs(slope(steps, errs) + solver.order) < 0.35, (errs, slope(steps, errs))


def test_pc_without_corrector_is_its_predictor():
    """pc's declared order is its Euler–Maruyama predictor's: with no corrector step it is
    that scheme, draw for draw."""
    pc = configure(get_solver("pc"), corrector_steps=0)
    em = get_solver("euler_maruyama")
    x = torch.full((500, 1), X_START, dtype=torch.float64)
    kw = {"diffusion": s_of}
    a = pc(lambda t, x: -THETA * x, x, time_grid(8).double(), score=lambda t, x: -x,
           generator=torch.Generator().manual_seed(1), **kw)
    b = em(lambda t, x: -THETA * x, x, time_grid(8).double(),
           generator=torch.Generator().manual_seed(1), **kw)
    torch.testing.assert_close(a.x, b.x)
    assert pc.order == em.order and a.nfe == b.nfe == 8


def test_ancestral_with_the_exact_kernel_is_exact():
    """Ancestral sampling through the exact OU transition (constant s) has no discretisation
    error at any step count: its error is below its declared order's at 2 steps."""
    s = 0.8

    def kernel(t, t_next, x):
        h = (t_next - t)[:, None]
        return Gaussian(x * torch.exp(-THETA * h), std=s * torch.sqrt((1 - torch.exp(-2 * THETA * h))
                                                                  / (2 * THETA)))

    x = torch.full((1_000_000, 1), X_START, dtype=torch.float64)
    res = get_solver("ancestral")(None, x, time_grid(2).double(), kernel=kernel,
                                  noise_last_step=True, generator=torch.Generator().manual_seed(0))
    var = s**2 * (1 - math.exp(-2 * THETA)) / (2 * THETA)
    assert abs(res.x.mean().item() - X_START * math.exp(-THETA)) < 3e-3
    assert abs(res.x.var().item() - var) < 3e-3
    em = weak_error(get_solver("euler_maruyama"), 2)
    assert em > 0.1  # the same step count is far off for a first-order scheme


def test_every_registered_solver_is_covered():
    covered = {"euler", "heun", "rk4", "ode", "adaptive", "euler_maruyama", "heun_sde", "pc",
               "ancestral"}
    assert set(SOLVERS) == covered
