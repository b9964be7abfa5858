"""Ancestral sampling: draw each step from the method's Gaussian reverse kernel.

For DDPM (Ho et al. 2020, Alg. 2) the kernel is ``p_theta(x_{t-1} | x_t) =
N(mu_theta(x_t, t), sigma_t^2 I)``; on a coarser grid it is the same posterior between
non-adjacent steps (Nichol & Dhariwal 2021, respacing); for a continuous noising SDE
it is the Gaussian posterior ``q(x_r | x_s, x0 = x0_theta(x_s))``. The method passes
``kernel(t, t_next, x) -> Gaussian`` (``t, t_next: (B,)`` in sbrun time) through
``Method.transport``; one kernel evaluation per step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sbrun.errors import ConfigError
from sbrun.solvers.base import Diffusion, Drift, SolveResult, StepContext, integrate


def ancestral_step(ctx: StepContext, t: Tensor, t_next: Tensor, h: Tensor, x: Tensor) -> Tensor:
    """A draw of ``kernel(t, t_next, x)`` (its mean on a noise-free step); one evaluation."""
    law = ctx.extras["kernel"](t, t_next, x)
    return law.mean + law.std * ctx.randn(x) if ctx.noisy else law.mean


def ancestral(drift: Drift, x: Tensor, grid: Tensor, *, diffusion: Diffusion | None = None,
              generator: torch.Generator | None = None, callback=None, keep: int | None = None,
              kernel=None, noise_last_step: bool = False) -> SolveResult:
    """``x_{k+1} ~ kernel(t_k, t_{k+1}, x_k)``; the last step returns the kernel's mean
    unless ``noise_last_step`` (DDPM's ``z = 0`` at ``t = 1``)."""
    if kernel is None:
        raise ConfigError("solver=ancestral needs a discrete reverse chain (a Gaussian kernel), "
                          "which only diffusion methods have (method=ddpm or score-sde); use an "
                          "ODE/SDE solver (euler, heun, rk4, ode, euler_maruyama) instead")
    return integrate(ancestral_step, 1, drift, x, grid, generator=generator, callback=callback,
                     keep=keep, noise_last_step=noise_last_step, noise=True, kernel=kernel)
