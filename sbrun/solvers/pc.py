"""Predictor–corrector sampling (Song et al. 2021, Alg. 1 with the corrector of Alg. 4/5).

At each grid time ``t_k``: ``corrector_steps`` Langevin steps on the current marginal,

    x <- x + e grad + sqrt(2 e) z,   e = 2 (snr |z| / |grad|)^2,  grad = score(t_k, x),

(the step size from the target signal-to-noise ratio ``snr``), then one
Euler–Maruyama predictor step of ``dx = drift dt + g dW`` to ``t_{k+1}`` (of the
probability-flow ODE when there is no diffusion). The method passes ``score(t, x)``
(``t: (B,)`` in sbrun time) through ``Method.transport``; NFE counts drift and score
evaluations.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sbrun.errors import ConfigError
from sbrun.solvers.base import Diffusion, Drift, SolveResult, StepContext, integrate
from sbrun.solvers.euler import euler_step


def _mean_norm(v: Tensor) -> Tensor:
    """Batch mean of the per-sample Euclidean norms of ``v: (B, *D)``."""
    return v.reshape(v.shape[0], -1).norm(dim=1).mean()


def langevin(score, t: Tensor, x: Tensor, snr: float, generator) -> Tensor:
    """One Langevin corrector step at time ``t: (B,)``. The norms are batch means, as in
    Song et al.'s code: a per-sample ``|grad|`` vanishes near a mode and the step blows up."""
    grad = score(t, x)
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    eps = 2 * (snr * _mean_norm(z) / _mean_norm(grad).clamp_min(1e-12)) ** 2
    return x + eps * grad + (2 * eps).sqrt() * z


def pc_step(ctx: StepContext, t: Tensor, t_next: Tensor, h: Tensor, x: Tensor) -> Tensor:
    """``corrector_steps`` Langevin steps at ``t``, then one Euler–Maruyama predictor step."""
    for _ in range(ctx.extras["corrector_steps"]):
        x = langevin(ctx.extras["score"], t, x, ctx.extras["snr"], ctx.generator)
    return euler_step(ctx, t, t_next, h, x)


def pc(drift: Drift, x: Tensor, grid: Tensor, *, diffusion: Diffusion | None = None,
       generator: torch.Generator | None = None, callback=None, keep: int | None = None,
       score=None, snr: float = 0.16, corrector_steps: int = 1,
       noise_last_step: bool = True) -> SolveResult:
    """Predictor (Euler–Maruyama) + Langevin corrector; needs the method's ``score``."""
    if score is None:
        raise ConfigError("solver=pc needs the score of the marginals for its Langevin "
                          "corrector; this method has none (use method=score-sde or ddpm)")
    if snr <= 0 or corrector_steps < 0:
        raise ConfigError(f"solver.snr must be > 0 and corrector_steps >= 0, got {snr}, "
                          f"{corrector_steps}")
    return integrate(pc_step, 1 + corrector_steps, drift, x, grid, diffusion=diffusion,
                     generator=generator, callback=callback, keep=keep,
                     noise_last_step=noise_last_step, score=score, snr=snr,
                     corrector_steps=corrector_steps)
