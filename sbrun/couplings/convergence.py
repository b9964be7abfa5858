"""How Sinkhorn / IPF converges (seed 003: "geometric convergence", W1(pi^n, pi*) <= C rho^n).

:func:`sinkhorn_trace` runs plain log-domain Sinkhorn (no epsilon scaling, so the rate
is the algorithm's own) and records the marginal error after every iteration: each
iteration is one IPF step (a half-bridge: fit the target marginal, then the source's).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sbrun.couplings.base import half_sq_dists, marginal_error


def sinkhorn_trace(x0: Tensor, x1: Tensor, sigma: float, iters: int = 500,
                   stop: float = 1e-13) -> tuple[list[float], Tensor]:
    """Marginal errors ``|P 1 - a|_1 + |P^T 1 - b|_1`` after each Sinkhorn iteration, and
    the last plan ``(n, m)``.

    Uniform weights, cost ``|x - y|^2 / 2`` and ``eps = sigma^2`` (POT's ``reg = 2 sigma^2``
    on squared distances). The iteration updates ``g`` (the plan then has marginal ``b``
    exactly) and then ``f`` (``a`` exactly); the error is measured between the two,
    where it is the column error of the previous ``f``. Stops early below ``stop``.
    """
    C = half_sq_dists(x0, x1)
    n, m = C.shape
    eps = float(sigma) ** 2
    la, lb = torch.full((n,), -math.log(n), dtype=C.dtype), torch.full((m,), -math.log(m), dtype=C.dtype)
    f = torch.zeros(n, dtype=C.dtype)
    errors, logp = [], None
    for _ in range(iters):
        g = -eps * torch.logsumexp((f[:, None] - C) / eps + la[:, None], 0)
        logp = (f[:, None] + g[None, :] - C) / eps + la[:, None] + lb[None, :]
        errors.append(marginal_error(logp.exp(), la.exp(), lb.exp()))
        f = -eps * torch.logsumexp((g[None, :] - C) / eps + lb[None, :], 1)
        if errors[-1] < stop:
            break
    return errors, logp.exp()


def geometric_rate(errors: list[float], floor: float = 1e-12) -> float:
    """The factor ``rho`` per iteration of a geometric decay ``err_n ~ C rho^n``: a least
    squares line through ``log err`` over the iterations above ``floor`` (round-off)
    after the first (transient) tenth. ``nan`` with fewer than three usable points."""
    pts = [(i, math.log(e)) for i, e in enumerate(errors) if e > floor]
    pts = pts[len(pts) // 10:]
    if len(pts) < 3:
        return float("nan")
    mi = sum(i for i, _ in pts) / len(pts)
    ml = sum(v for _, v in pts) / len(pts)
    slope = sum((i - mi) * (v - ml) for i, v in pts) / sum((i - mi) ** 2 for i, _ in pts)
    return math.exp(slope)
