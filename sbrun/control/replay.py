"""Reciprocal adjoint matching with a replay buffer (Adjoint Sampling; Havens et al. 2025).

On a base ``dX = g(t) dW`` from the origin (:class:`~sbrun.control.chains.BrownianChain`)
the lean adjoint is constant along a path, ``a = grad beta(X_1)``, and the optimal path
measure is the base reweighted by ``exp(-beta(X_1))``: its bridges are the base's. So the
optimal control solves the regression

    u* = argmin_u E_{X_1 ~ p*, X_t ~ base bridge(0, X_1)} |u(t, X_t) + g(t) a(X_1)|^2,

and Adjoint Sampling iterates it with ``X_1`` from the current control in place of
``p*``: on-policy end points ``(X_1, a)`` go into a FIFO buffer; a regression batch draws
pairs from it, a step ``k`` per pair, ``X_{t_k}`` from the Gaussian base bridge, and
regresses ``u(t_k, X_{t_k})`` onto ``-g_k a`` with weight ``N h_k / 2`` (the all-steps
loss of :func:`~sbrun.control.estimators.adjoint_matching_loss` in expectation). Unlike
on-policy adjoint matching, the regression points ``X_t`` are not the control's own
(possibly mode-collapsed) paths but bridges to every end point the buffer remembers, and
each energy gradient is reused by several regression batches.

``clip``: the per-sample norm of ``a`` is capped (Adjoint Sampling clips the energy
gradient): far from a sharp mode ``|grad E|`` is huge and a few such points would
dominate the regression; the optimum puts almost no mass there.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sbrun.control.chains import BrownianChain


class ReplayBuffer:
    """A FIFO of ``size`` end points ``x1: (n, *D)`` and their adjoints ``a: (n, *D)``."""

    def __init__(self, size: int):
        self.size = int(size)
        self.x1: Tensor | None = None
        self.a: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.x1 is None else self.x1.shape[0]

    def add(self, x1: Tensor, a: Tensor) -> None:
        x1, a = x1.detach(), a.detach()
        if self.x1 is not None:
            x1, a = torch.cat([self.x1, x1]), torch.cat([self.a, a])
        self.x1, self.a = x1[-self.size:], a[-self.size:]

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        idx = torch.randint(0, len(self), (n,), generator=generator).to(self.x1.device)
        return self.x1[idx], self.a[idx]

    def state_dict(self) -> dict:
        return {} if self.x1 is None else {"x1": self.x1.cpu(), "a": self.a.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.x1, self.a = state.get("x1"), state.get("a")


def clip_norm(a: Tensor, max_norm: float) -> Tensor:
    """``a`` with each row's norm capped at ``max_norm`` (``<= 0``: unchanged)."""
    if max_norm <= 0:
        return a
    norm = a.reshape(a.shape[0], -1).norm(dim=1).clamp_min(1e-12)
    scale = (max_norm / norm).clamp(max=1.0)
    return a * scale.reshape(-1, *([1] * (a.dim() - 1)))


@torch.no_grad()
def tilted_adjoint(chain: BrownianChain, beta, k: Tensor, x: Tensor, samples: int,
                   generator: torch.Generator | None = None, clip: float = 0.0) -> Tensor:
    """``E_{P*}[grad beta(X_1) | X_{t_k} = x]`` by self-normalised importance sampling: the
    optimum's law of ``X_1`` given ``X_t = x`` is the base's, ``N(x, (V(1) - V(t)) I)``, tilted
    by ``exp(-beta)``; ``samples`` draws per row, weights ``softmax(-beta)``. ``u* = -g`` times
    this, whatever the current control: the regression target no longer depends on where the
    control sends its samples. ``k: (B,)``, ``x: (B, *D)`` -> ``(B, *D)``."""
    rem = (chain.total_var - chain._var[k.cpu()]).clamp_min(0.0).sqrt().to(x)
    z = torch.randn((x.shape[0], samples, *x.shape[1:]), generator=generator, dtype=x.dtype)
    x1 = (x[:, None] + rem.reshape(-1, 1, *([1] * (x.dim() - 1))) * z.to(x.device)).flatten(0, 1)
    with torch.enable_grad():
        x1 = x1.requires_grad_(True)
        cost = beta(x1)
        (a,) = torch.autograd.grad(cost.sum(), x1)
    w = torch.softmax(-cost.reshape(x.shape[0], samples).double(), 1).to(x)
    a = clip_norm(a, clip).reshape(x.shape[0], samples, *x.shape[1:])
    return (w.reshape(*w.shape, *([1] * (x.dim() - 1))) * a).sum(1)


def reciprocal_matching_loss(chain: BrownianChain, control: nn.Module, x1: Tensor, a: Tensor,
                             generator: torch.Generator | None = None, target=None) -> Tensor:
    """``mean_i N h_k / 2 |u(t_k, X_k) + g_k a_i|^2`` with ``k ~ U{0..N-1}`` and ``X_k`` drawn
    from the base bridge to ``x1_i`` (module docstring); ``x1, a: (B, *D)``. ``target(k, X_k)``,
    if given, replaces ``a`` (e.g. :func:`tilted_adjoint`)."""
    n, b = chain.steps, x1.shape[0]
    k = torch.randint(0, n, (b,), generator=generator)
    eps = torch.randn(x1.shape, generator=generator, dtype=x1.dtype).to(x1.device)
    xk = chain.bridge(k, x1, eps)
    if target is not None:
        a = target(k, xk)
    g = torch.tensor([chain.g(i) for i in range(n)], dtype=x1.dtype)[k].to(x1.device)
    h = (chain.times[1:] - chain.times[:-1]).to(x1.dtype)[k].to(x1.device)
    t = chain.times.to(x1.dtype)[k].to(x1.device)
    shape = (-1, *([1] * (x1.dim() - 1)))
    u = control(xk, t)
    err = (u + g.reshape(shape) * a).reshape(b, -1).pow(2).sum(1)
    return (n * h * 0.5 * err).mean()
