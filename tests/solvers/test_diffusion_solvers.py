"""Heun, RK4, adaptive, ode, PC and ancestral on the probability flow of Gaussian data.

For data ``N(m, S)`` every marginal of a noising SDE is ``N(alpha_s m, C_s)``,
``C_s = alpha_s^2 S + sigma_s^2 I``, its score is known, and the probability-flow ODE is
the linear map ``x_r = alpha_r m + C_r^{1/2} C_s^{-1/2} (x_s - alpha_s m)`` (all ``C``
commute): an exact solution to measure convergence orders against.
"""

import math

import pytest
import torch

from sbrun.data.gaussians import Gaussian
from sbrun.errors import ConfigError
from sbrun.sde import VP
from sbrun.sde.noising import gaussian_marginal, gaussian_score
from sbrun.solvers import REQUIRES, check_solver, configure, get_solver, time_grid

F64 = torch.float64
MEAN = torch.tensor([1.0, -0.5], dtype=F64)
COV = torch.tensor([[0.5, 0.2], [0.2, 0.3]], dtype=F64)



def sqrtm(c, power=0.5):
    lam, q = torch.linalg.eigh(c)
    return (q * lam**power) @ q.T


def pf_drift(sde, score):
    """Probability-flow drift in sbrun time from a score ``score(x, s)``."""
    def f(t, x):
        s = sde.to_noising_time(t)
        return sde.ds_dt * sde.reverse_drift(s, x, score(x, s), probability_flow=True)
    return f


def exact_flow(sde, x):
    """The PF-ODE map from s = 1 (t = 0) to s = s_min (t = 1) for data N(MEAN, COV)."""
    m1, c1 = gaussian_marginal(sde, MEAN, COV, 1.0)
    m0, c0 = gaussian_marginal(sde, MEAN, COV, sde.s_min)
    return m0 + (x - m1) @ (sqrtm(c0) @ sqrtm(c1, -0.5)).T


def start(sde, n, seed=0):
    m1, c1 = gaussian_marginal(sde, MEAN, COV, 1.0)
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return m1 + z @ torch.linalg.cholesky(c1).T


@pytest.mark.parametrize("name, order, steps", [
    ("euler", 1, [20, 40, 80, 160]),
    ("heun", 2, [10, 20, 40, 80]),
    ("rk4", 4, [5, 10, 20, 40]),
])
def test_ode_solvers_converge_at_their_order(name, order, steps):
    sde = VP(s_min=0.01)
    x = start(sde, 50)
    exact, f = exact_flow(sde, x), pf_drift(sde, gaussian_score(sde, MEAN, COV))
    solver = get_solver(name)
    errs = []
    for n in steps:
        res = solver(f, x, time_grid(n).double())
        assert res.nfe == {"euler": 1, "heun": 2, "rk4": 4}[name] * n
        errs.append((res.x - exact).abs().max().item())
    slope = math.log(errs[-1] / errs[0]) / math.log(steps[-1] / steps[0])
    assert -order - 0.35 < slope < -order + 0.35, (errs, slope)
    assert solver.order == order


def test_ode_front_door_and_adaptive():
    sde = VP(s_min=0.01)
    x = start(sde, 50)
    exact, f = exact_flow(sde, x), pf_drift(sde, gaussian_score(sde, MEAN, COV))
    grid = time_grid(10).double()
    for scheme in ("euler", "heun", "rk4"):
        a = configure(get_solver("ode"), scheme=scheme)(f, x, grid)
        b = get_solver(scheme)(f, x, grid)
        torch.testing.assert_close(a.x, b.x)
        assert a.nfe == b.nfe
    res = configure(get_solver("ode"), scheme="dopri5", rtol=1e-7, atol=1e-7)(f, x, grid, keep=3)
    assert (res.x - exact).abs().max() < 1e-5 and res.nfe > 0
    assert res.path.shape == (3, 11, 2)
    loose = get_solver("adaptive")(f, x, grid, rtol=1e-3, atol=1e-3)
    assert 0 < loose.nfe < res.nfe  # the adaptive solver reports what it spent


def test_heun_sde_and_pc_keep_ou_stationary():
    """dX = -X dt + sqrt(2) dW keeps N(0, 1); PC's corrector uses the score -x."""
    n, g = 10_000, torch.Generator().manual_seed(3)
    x = torch.randn(n, 1, generator=g, dtype=F64)
    drift, diff = (lambda t, y: -y), (lambda t: torch.full_like(t, math.sqrt(2.0)))
    for name, extra in (("heun_sde", {}), ("pc", {"score": lambda t, y: -y})):
        res = get_solver(name)(drift, x, time_grid(50).double(), diffusion=diff, generator=g,
                               **extra)
        assert abs(res.x.mean().item()) < 0.05 and abs(res.x.var().item() - 1) < 0.06, name
        assert res.nfe == 100


def test_ancestral_samples_the_kernel():
    """A kernel N(x/2, 1/4): after k steps the law is N(x0 / 2^k, (1 - 4^-k)/3)."""
    g = torch.Generator().manual_seed(4)
    x = torch.full((10_000, 1), 8.0, dtype=F64)

    def kernel(t, t_next, y):
        return Gaussian(y / 2, std=torch.tensor(0.5, dtype=F64))

    res = get_solver("ancestral")(None, x, time_grid(3).double(), kernel=kernel, generator=g,
                                  noise_last_step=True)
    assert res.nfe == 3
    assert abs(res.x.mean().item() - 1.0) < 0.02
    assert abs(res.x.var().item() - (1 - 4.0**-3) / 3) < 0.02
    last = get_solver("ancestral")(None, x, time_grid(1).double(), kernel=kernel, generator=g)
    torch.testing.assert_close(last.x, x / 2)  # DDPM's z = 0 at the last step


def test_solvers_that_need_more_than_a_drift_refuse_without_it():
    x, grid = torch.zeros(2, 1), time_grid(2)
    with pytest.raises(ConfigError, match="ancestral needs a discrete reverse chain"):
        get_solver("ancestral")(lambda t, y: y, x, grid)
    with pytest.raises(ConfigError, match="pc needs the score"):
        get_solver("pc")(lambda t, y: y, x, grid)
    for name in ("heun", "rk4", "ode", "adaptive"):
        with pytest.raises(ConfigError, match="ODEs only"):
            get_solver(name)(lambda t, y: y, x, grid, diffusion=lambda t: torch.ones_like(t))
    with pytest.raises(ConfigError, match="unknown solver.scheme 'rk9'"):
        configure(get_solver("ode"), scheme="rk9")(lambda t, y: y, x, grid)
    with pytest.raises(ConfigError, match="unknown adaptive solver.scheme"):
        get_solver("adaptive")(lambda t, y: y, x, grid, scheme="rk4")


def test_check_solver_refuses_before_training():
    from sbrun.methods.base import Method

    class Flow(Method):  # a method with a drift only, like flow matching (the defaults)
        name = "flow-matching"

    class Diffusion(Method):
        name = "score-sde"
        solver_extras = ("kernel", "score")
        samples_sde = True

    for name in REQUIRES:
        with pytest.raises(ConfigError, match=f"solver={name} needs"):
            check_solver(get_solver(name), Flow())
        check_solver(configure(get_solver(name), snr=0.2), Diffusion())
    with pytest.raises(ConfigError, match="integrates ODEs only"):
        check_solver(get_solver("rk4"), Diffusion())
    check_solver(get_solver("rk4"), Flow())


def test_configure_binds_only_what_the_solver_takes():
    pc = configure(get_solver("pc"), snr=0.3, corrector_steps=2, scheme="rk4", steps=7)
    assert pc.fn.keywords == {"snr": 0.3, "corrector_steps": 2} and pc.fn.__name__ == "pc"
    assert configure(get_solver("euler"), snr=0.3) is get_solver("euler")
