"""Couplings between two point clouds: the result type and what is done with a plan.

A *coupling* (transport plan) between weighted point clouds ``x0: (n, *D)`` with
weights ``a`` and ``x1: (m, *D)`` with weights ``b`` is a non-negative matrix
``P: (n, m)`` with ``P 1 = a`` and ``P^T 1 = b``. Throughout the package the cost is
``c(x, y) = |x - y|^2 / 2`` and the entropic regularisation is ``eps = sigma^2`` (the
static Schrödinger bridge of the reference ``dX = sigma dW``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sbrun.errors import ConfigError

_MAX_CATEGORIES = 2**24  # torch.multinomial limit on the number of categories


@dataclass(eq=False)
class CouplingResult:
    """A solved coupling.

    Attributes:
        plan: ``(n, m)`` transport plan, non-negative, total mass 1.
        cost: transport cost ``<P, c>`` with ``c_ij = |x0_i - x1_j|^2 / 2`` (no entropy).
        potentials: dual potentials ``(f (n,), g (m,))`` or ``None``. For the entropic
            methods ``plan_ij = a_i b_j exp((f_i + g_j - c_ij) / sigma^2)``, i.e. the
            Schrödinger system ``dpi = exp((phi + psi - c) / sigma^2) dmu dnu``; for
            ``exact`` they are Kantorovich potentials (``f_i + g_j <= c_ij``, equality on
            the support of the plan).
        converged: whether the solver met its tolerance.
        n_iter: iterations used (0 for closed forms).
        err: achieved marginal error ``|P 1 - a|_1 + |P^T 1 - b|_1``.
    """

    plan: Tensor
    cost: float
    potentials: tuple[Tensor, Tensor] | None
    converged: bool
    n_iter: int
    err: float


def flatten(x: Tensor) -> Tensor:
    """``(n, *D) -> (n, prod(D))``; a 1-D input ``(n,)`` is read as ``n`` scalars."""
    return x.reshape(x.shape[0], -1)


def half_sq_dists(x0: Tensor, x1: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """Cost matrix ``c_ij = |x0_i - x1_j|^2 / 2`` in float64.

    Args:
        x0: ``(n, *D)``; x1: ``(m, *D)`` with the same trailing shape.

    Returns:
        ``(n, m)`` in ``dtype`` (float64 by default) on ``x0.device``. Both clouds are
        centred on a common point first (the cost is translation invariant) to limit
        cancellation in ``|x|^2 + |y|^2 - 2 x.y``.
    """
    if x0.shape[1:] != x1.shape[1:]:
        raise ConfigError(f"x0 and x1 must share trailing shape, got {tuple(x0.shape)} "
                          f"and {tuple(x1.shape)}")
    u, v = flatten(x0).to(dtype), flatten(x1).to(device=x0.device, dtype=dtype)
    centre = 0.5 * (u.mean(0) + v.mean(0))
    u, v = u - centre, v - centre
    sq = u.pow(2).sum(1)[:, None] + v.pow(2).sum(1)[None, :] - 2.0 * (u @ v.T)
    return 0.5 * sq.clamp_min_(0.0)


def weights(w: Tensor | None, n: int, name: str, like: Tensor) -> Tensor:
    """Validated float64 weights ``(n,)`` summing to 1 (uniform when ``w`` is None)."""
    if w is None:
        return torch.full((n,), 1.0 / n, dtype=torch.float64, device=like.device)
    w = torch.as_tensor(w, dtype=torch.float64, device=like.device).reshape(-1)
    if w.shape[0] != n:
        raise ConfigError(f"{name} has {w.shape[0]} entries, expected {n}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or not float(w.sum()) > 0:
        raise ConfigError(f"{name} must be finite, non-negative and not all zero")
    return w / w.sum()


def marginal_error(plan: Tensor, a: Tensor, b: Tensor) -> float:
    """``|P 1 - a|_1 + |P^T 1 - b|_1`` (NaN when the plan is not finite)."""
    p = plan.double()
    return float((p.sum(1) - a).abs().sum() + (p.sum(0) - b).abs().sum())


def sample_pairs(plan: Tensor, k: int, generator: torch.Generator | None = None,
                 replace: bool = True) -> tuple[Tensor, Tensor]:
    """Draw ``k`` index pairs ``(i, j) ~ P / sum(P)``.

    Args:
        plan: ``(n, m)`` non-negative plan (normalised here).
        k: number of pairs.
        generator: optional ``torch.Generator``; sampling runs on its device and the
            indices are moved back to ``plan.device``.
        replace: draw with replacement (the usual minibatch-OT choice). Without
            replacement needs ``k <= nnz(P)`` and ``n m <= 2^24``.

    Returns:
        ``(i, j)``, two ``(k,)`` long tensors on ``plan.device``.
    """
    if plan.dim() != 2:
        raise ConfigError(f"plan must be (n, m), got {tuple(plan.shape)}")
    n, m = plan.shape
    dev = generator.device if generator is not None else plan.device
    p = plan.detach().to(dev).clamp_min(0)
    if not float(p.sum()) > 0 or not bool(torch.isfinite(p).all()):
        raise ConfigError("plan must be finite with positive mass")
    if n * m <= _MAX_CATEGORIES:
        flat = torch.multinomial(p.reshape(-1), k, replacement=replace, generator=generator)
        i, j = flat // m, flat % m
    elif replace:  # two stages: row from the first marginal, column from that row
        i = torch.multinomial(p.sum(1), k, replacement=True, generator=generator)
        j = torch.multinomial(p[i], 1, generator=generator).squeeze(1)
    else:
        raise ConfigError(f"sampling without replacement needs n*m <= 2^24, got {n}x{m}")
    return i.to(plan.device), j.to(plan.device)


def barycentric_map(plan: Tensor, x1: Tensor) -> Tensor:
    """Barycentric projection ``T(x0_i) = E_P[x1 | x0_i] = sum_j P_ij x1_j / sum_j P_ij``.

    For an entropic plan this is the entropic map estimator (Pooladian & Niles-Weed
    2021); for an exact plan between equal-size uniform clouds it is the Monge map.

    Args:
        plan: ``(n, m)``; x1: ``(m, *D)``.

    Returns:
        ``(n, *D)`` in ``x1.dtype``; rows with zero mass map to ``0``.
    """
    if plan.dim() != 2 or plan.shape[1] != x1.shape[0]:
        raise ConfigError(f"plan {tuple(plan.shape)} does not match x1 {tuple(x1.shape)}")
    p = plan.to(device=x1.device, dtype=torch.float64)
    rows = p.sum(1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    out = (p @ flatten(x1).double()) / rows
    return out.to(x1.dtype).reshape(plan.shape[0], *x1.shape[1:])
