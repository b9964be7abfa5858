"""Log-likelihood of a continuous normalising flow: the instantaneous change of variables.

Along ``dx/dtau = v(tau, x)`` from ``tau_0`` to ``tau_1``, ``d log p(x_tau)/dtau = -div v``
(Chen et al. 2018, Thm. 1), so

    log p_{tau_0}(x) = log p_{tau_1}(x_{tau_1}) + int_{tau_0}^{tau_1} div v(tau, x_tau) dtau.

For a diffusion model ``v`` is the probability-flow drift in noising time and
``p_{tau_1}`` the prior (Song et al. 2021, App. D.2). The divergence is exact (``d``
backward passes) or Hutchinson's estimate ``E[e^T (dv/dx) e]`` with one Rademacher
probe ``e`` per sample held fixed along the path (Grathwohl et al. 2019). The ODE is
integrated adaptively (torchdiffeq, ``rtol``/``atol``) or with sbrun's fixed-step schemes
(``steps``), so that solvers can be compared on the same likelihood.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from sbrun.errors import ConfigError
from sbrun.solvers.adaptive import ADAPTIVE_SCHEMES
from sbrun.solvers.ode import FIXED_SCHEMES

DIVERGENCES = ("auto", "exact", "hutchinson")
EXACT_MAX_DIM = 10  # "auto" is exact up to this many dimensions


@dataclass
class LogLikelihood:
    """``logp: (B,)`` at the start; ``prior_logp: (B,)`` at the end point ``z: (B, *D)``;
    ``delta: (B,)`` the integrated divergence; ``nfe`` velocity evaluations."""

    logp: Tensor
    prior_logp: Tensor
    delta: Tensor
    z: Tensor
    nfe: int


def divergence(v: Tensor, x: Tensor, probe: Tensor | None = None) -> Tensor:
    """``div_x v`` for ``v = f(x)`` built with autograd from ``x: (B, *D)`` -> ``(B,)``.

    ``probe=None``: exact (one backward pass per coordinate); else Hutchinson with ``probe``.
    """
    if probe is not None:
        (vjp,) = torch.autograd.grad(v, x, probe, create_graph=False)
        return (vjp * probe).reshape(x.shape[0], -1).sum(1)
    vf, xf_shape = v.reshape(v.shape[0], -1), x.shape
    div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for i in range(vf.shape[1]):
        (g,) = torch.autograd.grad(vf[:, i].sum(), x, retain_graph=i < vf.shape[1] - 1)
        div = div + g.reshape(xf_shape[0], -1)[:, i]
    return div


def check_likelihood_scheme(scheme: str, steps: int) -> None:
    """Refuse a scheme :func:`log_likelihood` cannot run, or ``steps < 1`` for a fixed one."""
    if scheme in FIXED_SCHEMES:
        if steps < 1:
            raise ConfigError(f"likelihood steps must be >= 1, got {steps}")
        return
    if scheme not in ADAPTIVE_SCHEMES:
        valid = ", ".join([*ADAPTIVE_SCHEMES, *FIXED_SCHEMES])
        raise ConfigError(f"unknown likelihood scheme '{scheme}'; valid: {valid}")


def _fixed_grid(augmented, x: Tensor, span: tuple[float, float], scheme: str,
                steps: int) -> tuple[Tensor, Tensor]:
    """``(x, delta)`` at ``span[1]`` by the fixed-step ``scheme`` (sbrun's own euler / heun /
    rk4) over ``steps`` uniform steps, on the flattened state ``[x, delta]: (B, d + 1)``."""
    b = x.shape[0]

    def drift(tau: Tensor, state: Tensor) -> Tensor:
        v, div = augmented(tau, (state[:, :-1].reshape(x.shape), state[:, -1]))
        return torch.cat([v.reshape(b, -1), div[:, None]], 1)

    start = torch.cat([x.reshape(b, -1), x.new_zeros(b, 1)], 1)
    grid = torch.linspace(span[0], span[1], steps + 1, dtype=torch.float64)
    end = FIXED_SCHEMES[scheme](drift, start, grid).x
    return end[:, :-1].reshape(x.shape), end[:, -1]


def log_likelihood(
    velocity: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    span: tuple[float, float],
    prior_log_prob: Callable[[Tensor], Tensor],
    *,
    method: str = "auto",
    scheme: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    steps: int = 100,
    generator: torch.Generator | None = None,
) -> LogLikelihood:
    """``log p_{span[0]}(x)`` for ``x: (B, *D)`` through ``velocity(tau: (B,), x) -> (B, *D)``.

    ``method``: ``exact`` | ``hutchinson`` | ``auto`` (exact for ``d <= 10``).
    ``scheme``: an adaptive torchdiffeq scheme (``dopri5``, ... with ``rtol``/``atol``) or a
    fixed-step one (``euler`` | ``heun`` | ``rk4``, ``steps`` uniform steps over ``span``).
    """
    from torchdiffeq import odeint

    if method not in DIVERGENCES:
        raise ConfigError(f"unknown divergence '{method}'; valid: {', '.join(DIVERGENCES)}")
    check_likelihood_scheme(scheme, steps)
    d = x[0].numel()
    exact = method == "exact" or (method == "auto" and d <= EXACT_MAX_DIM)
    probe = None
    if not exact:
        probe = torch.randint(0, 2, x.shape, generator=generator).to(x.device, x.dtype) * 2 - 1
    counter = [0]

    def augmented(tau: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        counter[0] += 1
        with torch.enable_grad():
            xt = state[0].detach().requires_grad_(True)
            v = velocity(tau.to(x.dtype).expand(x.shape[0]), xt)
            div = divergence(v, xt, probe)
        return v.detach(), div.detach()

    if scheme in FIXED_SCHEMES:
        z, delta = _fixed_grid(augmented, x, span, scheme, steps)
    else:
        ts = torch.tensor(span, dtype=x.dtype, device=x.device)
        zero = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        with torch.no_grad():
            xs, deltas = odeint(augmented, (x, zero), ts, rtol=rtol, atol=atol, method=scheme,
                                options={"step_t": ts[-1:]})
        z, delta = xs[-1], deltas[-1]
    prior_logp = prior_log_prob(z)
    return LogLikelihood(prior_logp + delta, prior_logp, delta, z, counter[0])
