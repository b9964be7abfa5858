"""Gradient estimators of the control objective on a base chain (:mod:`sbrun.control.chains`).

Objective (per sample, mean over the batch)::

    L(theta) = sum_k h_k |u_k|^2 / 2 + beta(X_N),   u_k = u_theta(t_k, X_k),
    X_{k+1} = m_k(X_k) + s_k (eps_k + sqrt(h_k) u_k).

Its exact gradient is ``dL/dtheta = sum_k h_k (u_k + g_k a_{k+1}) . du_k/dtheta`` with
``g_k = s_k / sqrt(h_k)`` and the discrete adjoint ``a_k = dL/dX_k``::

    a_N = grad beta(X_N),
    a_k = a_{k+1} (dm_k/dx + s_k sqrt(h_k) du_k/dx) + h_k u_k du_k/dx.

* ``backprop`` -- autograd through the whole chain (seed 002: "N forward, N backward";
  memory O(N) network activations).
* ``adjoint`` -- the chain without a graph, then the adjoint recursion backwards one
  step at a time (each step's graph is rebuilt and freed), accumulating the parameter
  gradient: the same gradient as backprop with activation memory O(1) in N (the N
  states, ``N * B * D`` numbers, are kept). The continuous adjoint of Li et al. 2020,
  discretised like the forward chain, so it matches backprop exactly.
* ``adjoint_matching`` -- Domingo-Enrich et al. 2024: regress ``u(t_k, X_k)`` onto
  ``-g_k a~_{k+1}`` on trajectories of the current control without gradient, where the
  *lean* adjoint drops the control terms, ``a~_k = a~_{k+1} dm_k/dx`` (base only). The
  loss ``sum_k h_k |u_k + g_k a~_{k+1}|^2 / 2`` is evaluated at ``K`` random steps
  (``times``; the regression's "K forward, K backward"). With ``lean=False`` the full
  adjoint is used ("basic adjoint matching"), whose gradient equals backprop's; the
  lean one equals it where ``du/dx = 0`` and at the optimum (``u = -g a``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sbrun.control.chains import Chain
from sbrun.errors import ConfigError

ESTIMATORS = ("backprop", "adjoint", "adjoint_matching")


@dataclass
class Rollout:
    """States ``xs: (N+1, B, *D)`` (no graph), per-sample running cost ``(B,)`` and ``beta(X_N)``."""

    xs: Tensor
    running: Tensor
    beta: Tensor


def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


def step(chain: Chain, k: int, x: Tensor, u: Tensor | None, eps: Tensor | None) -> Tensor:
    """One (controlled) chain step; ``u=None``: the base; ``eps=None``: no noise."""
    out = chain.mean(k, x)
    s = chain.std(k)
    if u is not None:
        out = out + s * chain.h(k) ** 0.5 * u
    if eps is not None:
        out = out + s * eps
    return out


def _sqnorm(u: Tensor) -> Tensor:
    return u.reshape(u.shape[0], -1).pow(2).sum(1)


@torch.no_grad()
def rollout(chain: Chain, control: nn.Module | None, x0: Tensor, beta,
            generator: torch.Generator | None = None, keep: bool = True) -> Rollout:
    """Simulate the (controlled) chain from ``x0`` without a graph; ``control=None``: base."""
    x, xs = x0, [x0]
    running = torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device)
    for k in range(chain.steps):
        u = control(x, chain.t(k, x)) if control is not None else None
        if u is not None:
            running += 0.5 * chain.h(k) * _sqnorm(u)
        x = step(chain, k, x, u, _noise(x, generator))
        if keep:
            xs.append(x)
    return Rollout(torch.stack(xs) if keep else x[None], running, beta(x))


def backprop_loss(chain: Chain, control: nn.Module, x0: Tensor, beta,
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``(mean L, X_N)`` with the whole chain on the autograd tape."""
    x = x0
    running = torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device)
    for k in range(chain.steps):
        u = control(x, chain.t(k, x))
        running = running + 0.5 * chain.h(k) * _sqnorm(u)
        x = step(chain, k, x, u, _noise(x, generator))
    return (running + beta(x)).mean(), x.detach()


def terminal_adjoint(beta, x: Tensor) -> Tensor:
    """``a_N = grad beta(X_N)`` per sample."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (a,) = torch.autograd.grad(beta(x).sum(), x)
    return a


def _vjp(chain: Chain, k: int, x: Tensor, a: Tensor, control: nn.Module | None,
         params: list[Tensor]) -> tuple[Tensor, list[Tensor | None]]:
    """``a . d(step_k + h |u|^2/2)/d(x, params)`` at ``x`` (control ``None``: base mean only)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        if control is None:
            out, extra = chain.mean(k, x), 0.0
        else:
            u = control(x, chain.t(k, x))
            out = step(chain, k, x, u, None)
            extra = 0.5 * chain.h(k) * _sqnorm(u).sum()
        grads = torch.autograd.grad((out * a).sum() + extra, [x, *params], allow_unused=True)
    return grads[0], list(grads[1:])


def inject(params: list[Tensor], grads: list[Tensor], value: Tensor) -> Tensor:
    """A scalar equal to ``value`` whose gradient w.r.t. ``params`` is ``grads``."""
    surrogate = sum((p * g.detach()).sum() for p, g in zip(params, grads))
    return surrogate - surrogate.detach() + value.detach()


def adjoint_loss(chain: Chain, control: nn.Module, x0: Tensor, beta,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``(L, X_N)``: ``L``'s value is the mean objective, its gradient the adjoint's."""
    params = [p for p in control.parameters() if p.requires_grad]
    ro = rollout(chain, control, x0, beta, generator)
    a = terminal_adjoint(beta, ro.xs[-1])  # per sample; the batch mean divides at the end
    total = [torch.zeros_like(p) for p in params]
    for k in reversed(range(chain.steps)):
        a, grads = _vjp(chain, k, ro.xs[k], a, control, params)
        for acc, g in zip(total, grads):
            if g is not None:
                acc += g
    total = [g / x0.shape[0] for g in total]
    return inject(params, total, (ro.running + ro.beta).mean()), ro.xs[-1]


def adjoint_matching_loss(chain: Chain, control: nn.Module, x0: Tensor, beta,
                          generator: torch.Generator | None = None, times: int = 0,
                          lean: bool = True, _time_seed: int | None = None, clip: float = 0.0
                          ) -> tuple[Tensor, Tensor, Tensor]:
    """``(regression loss, X_N, objective per sample)``; ``times``: K steps (0: all N), drawn
    uniformly without replacement and weighted by ``N / K`` (an unbiased estimate of the
    all-steps loss; ``_time_seed`` fixes them, for tests); ``clip > 0`` caps the norm of
    ``a_N`` per sample (:func:`sbrun.control.replay.clip_norm`)."""
    from sbrun.control.replay import clip_norm

    ro = rollout(chain, control, x0, beta, generator)
    n = chain.steps
    a = clip_norm(terminal_adjoint(beta, ro.xs[-1]), clip)
    targets: list[Tensor | None] = [None] * n
    for k in reversed(range(n)):
        targets[k] = a  # a_{k+1}
        if k == 0:
            break
        if chain.identity_mean and lean:
            continue
        a, _ = _vjp(chain, k, ro.xs[k], a, None if lean else control, [])
    ks = list(range(n))
    if 0 < times < n:
        seed = _time_seed if _time_seed is not None else int(
            torch.randint(0, 2**31 - 1, (1,), generator=generator))
        gen = torch.Generator().manual_seed(seed)
        ks = sorted(torch.randperm(n, generator=gen)[:times].tolist())
    weight = n / len(ks)
    loss = 0.0
    for k in ks:
        x = ro.xs[k]
        u = control(x, chain.t(k, x))
        loss = loss + weight * 0.5 * chain.h(k) * _sqnorm(u + chain.g(k) * targets[k]).mean()
    return loss, ro.xs[-1], ro.running + ro.beta


def check_estimator(name: str) -> str:
    if name not in ESTIMATORS:
        raise ConfigError(f"unknown method.estimator '{name}'; valid: {', '.join(ESTIMATORS)}")
    return name
