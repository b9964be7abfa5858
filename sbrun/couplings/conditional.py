"""The conditional law ``x1 | x0`` of an entropic plan, for new source points.

An entropic plan between ``n`` source points ``x_i`` (uniform weights) and the target,
with potentials ``(f, g)`` and cost ``c(x, y) = |x - y|^2 / 2``, has the conditional

    pi(dy | x) ∝ exp((g(y) - c(x, y)) / eps) nu(dy),

where the target potential is the (soft) c-transform of the source one,

    g(y) = -eps log (1/n) sum_i exp((f_i - c(x_i, y)) / eps),

a function defined for every ``y``, not only on the plan's target atoms (at those atoms
it is Sinkhorn's ``g``, since the last Sinkhorn half-step is this c-transform).
Representing ``nu`` by ``M`` target draws ``y_k`` gives a weighted empirical conditional
``w_k(x) ∝ exp((g(y_k) - c(x, y_k)) / eps)`` whose resolution is its effective sample
size ``1 / sum_k w_k^2``, which grows linearly with ``M``. All sums are chunked: no
``(B, M)`` matrix larger than ``_CHUNK`` entries.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sbrun.couplings.base import half_sq_dists

_CHUNK = 1 << 22  # entries of one (rows, atoms) block (32 MiB in float64)


def _rows(n_cols: int) -> int:
    return max(1, _CHUNK // max(n_cols, 1))


def _flat(x: Tensor, centre: Tensor | None = None) -> Tensor:
    x = x.reshape(x.shape[0], -1).double()
    return x if centre is None else x - centre.to(x.device)


def extend_potential(f: Tensor, x: Tensor, y: Tensor, eps: float) -> Tensor:
    """``g(y_k) = -eps log mean_i exp((f_i - |x_i - y_k|^2 / 2) / eps)``: ``(M,)``.

    Args:
        f: ``(n,)`` source potential of a plan with uniform source weights on ``x: (n, *D)``.
        y: ``(M, *D)`` target points.
    """
    out = []
    for yc in y.split(_rows(x.shape[0])):
        z = (f.double()[:, None] - half_sq_dists(x, yc)) / eps
        out.append(-eps * (torch.logsumexp(z, 0) - math.log(x.shape[0])))
    return torch.cat(out)


class _Logits:
    """``(g(y_k) - |x - y_k|^2 / 2) / eps`` for row blocks of ``x``, atoms centred once."""

    def __init__(self, y: Tensor, g: Tensor, eps: float):
        self.centre = _flat(y).mean(0)
        self.y = _flat(y, self.centre)
        self.base = (g.double().to(self.y.device) - 0.5 * self.y.pow(2).sum(1)) / eps
        self.eps = eps

    def __call__(self, x: Tensor) -> Tensor:
        u = _flat(x, self.centre).to(self.y.device)
        return self.base[None] + (u @ self.y.T - 0.5 * u.pow(2).sum(1, keepdim=True)) / self.eps


def conditional_mean(x: Tensor, y: Tensor, g: Tensor, eps: float) -> Tensor:
    """``E_pi[y | x]`` over the atoms ``y: (M, *D)`` with potential ``g: (M,)``: ``(B, *D)``."""
    logits, yf = _Logits(y, g, eps), _flat(y)
    out = [torch.softmax(logits(xc), 1) @ yf for xc in x.split(_rows(y.shape[0]))]
    return torch.cat(out).reshape(x.shape[0], *y.shape[1:])


def conditional_draw(x: Tensor, y: Tensor, g: Tensor, eps: float,
                     generator: torch.Generator | None = None) -> Tensor:
    """One atom index ``k ~ pi(. | x_b)`` per row of ``x: (B, *D)``: ``(B,)``.

    Equal rows (``sbrun-transport --repeats K`` repeats each point) share their weights:
    each distinct row draws as many atoms, independently, as it occurs (inverse CDF).
    """
    uniq, inv = torch.unique(_flat(x), dim=0, return_inverse=True)
    counts = torch.bincount(inv, minlength=uniq.shape[0])
    order = torch.argsort(inv, stable=True)
    first = torch.cumsum(counts, 0) - counts  # the rank of a row among its equals
    rank = torch.empty_like(inv)
    rank[order] = torch.arange(inv.shape[0], device=inv.device) - first[inv[order]]
    logits, width, draws = _Logits(y, g, eps), int(counts.max()), []
    for uc in uniq.split(_rows(y.shape[0])):
        cdf = torch.softmax(logits(uc), 1).cumsum_(1)
        u = torch.rand(uc.shape[0], width, generator=generator, dtype=cdf.dtype) * cdf[:, -1:]
        draws.append(torch.searchsorted(cdf, u).clamp_(max=y.shape[0] - 1))
    return torch.cat(draws)[inv.cpu(), rank.cpu()]
