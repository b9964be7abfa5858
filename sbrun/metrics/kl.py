"""Kullback-Leibler divergences: 2D sample-vs-sample, samples-vs-density, Gaussians.

* :func:`kl_2d` -- ``KL(p || q)`` from two 2D samples via Gaussian KDEs on a grid.
* :func:`kl_to_density` -- ``KL(model || target)`` from model samples and the target's
  log-density, with the Kozachenko-Leonenko k-NN entropy estimator.
* :func:`kl_gaussian` -- closed form between two Gaussians.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from scipy.special import digamma
from torch import Tensor

from sbrun.errors import ConfigError, DataError

_F64 = torch.float64
#: probability floor added to every grid cell of both KDE histograms in ``kl_2d``
KDE_FLOOR = 1e-10

Lim = float | tuple[float, float] | Sequence[tuple[float, float]]


def _points(x: Tensor, what: str, dim: int | None = None) -> Tensor:
    """``x`` as float64 ``(n, d)`` on the CPU; checks the shape (not finiteness)."""
    x = torch.as_tensor(x).detach().to("cpu", _F64)
    if x.dim() != 2 or x.shape[0] < 2 or (dim is not None and x.shape[1] != dim):
        want = f"(n >= 2, {dim})" if dim else "(n >= 2, d)"
        raise DataError(f"{what}: expected samples of shape {want}, got {tuple(x.shape)}")
    return x


def _finite(*xs: Tensor) -> bool:
    return all(bool(torch.isfinite(x).all()) for x in xs)


def scott_bandwidth(x: Tensor) -> Tensor:
    """Scott's rule per coordinate: ``h_j = std_j * n^(-1 / (d + 4))``; ``(n, d)`` -> ``(d,)``."""
    n, d = x.shape
    return x.std(0) * n ** (-1.0 / (d + 4))


def _grid_edges(pooled: Tensor, h: Tensor, bins: int, lim: Lim | None) -> list[Tensor]:
    """Cell centres per axis (two ``(bins,)`` tensors) of the evaluation grid."""
    if lim is None:
        lo, hi = pooled.min(0).values - 3 * h, pooled.max(0).values + 3 * h
        bounds = [(float(lo[j]), float(hi[j])) for j in range(2)]
    elif isinstance(lim, (int, float)):
        bounds = [(-float(lim), float(lim))] * 2
    elif len(lim) == 2 and all(isinstance(v, (int, float)) for v in lim):
        bounds = [(float(lim[0]), float(lim[1]))] * 2
    else:
        bounds = [(float(a), float(b)) for a, b in lim]
    centres = []
    for a, b in bounds:
        if not b > a:
            raise ConfigError(f"kl_2d: empty grid range ({a}, {b})")
        w = (b - a) / bins
        centres.append(a + w * (torch.arange(bins, dtype=_F64) + 0.5))
    return centres


def _kde_mass(x: Tensor, centres: list[Tensor], h: Tensor) -> Tensor:
    """Gaussian-KDE probability of each grid cell, ``(bins, bins)``, summing to 1.

    The kernel ``N(0, diag(h^2))`` factorises over the axes, so the density on the grid
    is ``Kx^T Ky / n`` with ``K_a[i, g] = N(c_a[g]; x_i,a, h_a^2)``: ``O(n * bins)`` memory.
    """
    norm = h * math.sqrt(2 * math.pi)
    ks = [
        torch.exp(-0.5 * ((c[None, :] - x[:, a, None]) / h[a]) ** 2) / norm[a]
        for a, c in enumerate(centres)
    ]
    dens = ks[0].T @ ks[1] / x.shape[0]
    mass = dens + KDE_FLOOR * dens.sum()
    return mass / mass.sum()


def kl_2d(
    p_samples: Tensor,
    q_samples: Tensor,
    bins: int = 64,
    bandwidth: float | None = None,
    lim: Lim | None = None,
) -> float:
    """``KL(p || q)`` between two 2D samples, ``(n, 2)`` and ``(m, 2)``, in nats.

    Both densities are Gaussian KDEs with one shared bandwidth: ``bandwidth`` (isotropic,
    in data units) or, by default, Scott's rule on the pooled ``n + m`` samples per
    coordinate, ``h_j = std_j (n + m)^(-1/6)``. They are evaluated at the centres of a
    ``bins x bins`` grid that covers the pooled range plus ``3 h`` on each side (or
    ``lim``: a half-width ``L`` for ``[-L, L]^2``, a ``(lo, hi)`` pair for both axes, or
    one pair per axis), turned into cell masses ``p_g = p(c_g) dA`` renormalised to sum
    to 1, floored (``p_g += 1e-10 * sum p``, then renormalised) so that ``log 0`` never
    occurs, and ``KL = sum_g p_g log(p_g / q_g)`` (the Riemann sum of
    ``int p log(p / q)``). The KDE smoothing biases the result down: for two Gaussians
    with covariance ``S`` it estimates the KL of the ``S + h^2`` versions. NaN when a
    sample has a non-finite entry (e.g. a diverged model).
    """
    p = _points(p_samples, "kl_2d p_samples", 2)
    q = _points(q_samples, "kl_2d q_samples", 2)
    if not _finite(p, q):
        return math.nan
    if bins < 2:
        raise ConfigError(f"kl_2d: bins must be >= 2, got {bins}")
    pooled = torch.cat([p, q])
    if bandwidth is None:
        h = scott_bandwidth(pooled).clamp_min(1e-12)
    else:
        if not bandwidth > 0:
            raise ConfigError(f"kl_2d: bandwidth must be > 0, got {bandwidth}")
        h = torch.full((2,), float(bandwidth), dtype=_F64)
    centres = _grid_edges(pooled, h, bins, lim)
    pm, qm = _kde_mass(p, centres, h), _kde_mass(q, centres, h)
    return float((pm * (pm.log() - qm.log())).sum())


def _kth_nn_distance(x: Tensor, k: int, chunk: int = 2048) -> Tensor:
    """Distance of each row of ``x: (n, d)`` to its ``k``-th nearest other row, ``(n,)``."""
    out = []
    for s in range(0, x.shape[0], chunk):
        d = torch.cdist(x[s : s + chunk], x)
        idx = torch.arange(s, s + d.shape[0])
        d[torch.arange(d.shape[0]), idx] = math.inf  # exclude the point itself
        out.append(d.topk(k, dim=1, largest=False).values[:, -1])
    return torch.cat(out)


def knn_entropy(x: Tensor, k: int = 5) -> float:
    """Kozachenko-Leonenko estimate of the differential entropy (nats) of ``x: (n, d)``.

    ``H = psi(n) - psi(k) + log V_d + (d / n) sum_i log eps_i``, with ``eps_i`` the
    Euclidean distance from ``x_i`` to its ``k``-th nearest neighbour and
    ``V_d = pi^(d/2) / Gamma(d/2 + 1)`` the volume of the unit ball. Duplicate points
    (``eps_i = 0``) make it ``-inf``; the estimate is biased in high ``d``.
    """
    x = _points(x, "knn_entropy")
    n, d = x.shape
    if not 1 <= k < n:
        raise ConfigError(f"knn_entropy: need 1 <= k < n, got k={k}, n={n}")
    eps = _kth_nn_distance(x, k)
    log_vd = 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1)
    return float(digamma(n) - digamma(k) + log_vd + d * eps.log().mean())


def kl_to_density(
    samples: Tensor,
    log_prob_fn: Callable[[Tensor], Tensor],
    k: int = 5,
) -> float:
    """``KL(model || target)`` from model ``samples: (n, d)`` and the target's log-density.

    ``KL = -H(model) - E_model[log target]``: ``H`` is the Kozachenko-Leonenko k-NN
    entropy estimate (:func:`knn_entropy`) and the expectation the sample mean of
    ``log_prob_fn(samples)`` (called on float64 ``(n, d)``, returning ``(n,)``). NaN
    when a sample has a non-finite entry.
    """
    x = _points(samples, "kl_to_density samples")
    if not _finite(x):
        return math.nan
    with torch.no_grad():
        lp = torch.as_tensor(log_prob_fn(x)).to(_F64).reshape(-1)
    if lp.shape[0] != x.shape[0]:
        raise DataError(f"kl_to_density: log_prob_fn gave {lp.shape[0]} values for {x.shape[0]}")
    return -knn_entropy(x, k) - float(lp.mean())


def kl_gaussian(m0: Tensor, S0: Tensor, m1: Tensor, S1: Tensor) -> float:
    """``KL(N(m0, S0) || N(m1, S1))`` in nats; means ``(d,)``, covariances ``(d, d)``.

    ``1/2 [tr(S1^{-1} S0) + (m1 - m0)^T S1^{-1} (m1 - m0) - d + log det S1 - log det S0]``.
    """
    m0, m1 = (torch.as_tensor(m, dtype=_F64).reshape(-1) for m in (m0, m1))
    S0, S1 = (torch.as_tensor(s, dtype=_F64) for s in (S0, S1))
    d = m0.shape[0]
    L0, L1 = torch.linalg.cholesky(S0), torch.linalg.cholesky(S1)
    a = torch.linalg.solve_triangular(L1, L0, upper=False)  # L1^{-1} L0
    b = torch.linalg.solve_triangular(L1, (m1 - m0)[:, None], upper=False)
    logdet = 2 * (L1.diagonal().log().sum() - L0.diagonal().log().sum())
    return float(0.5 * (a.pow(2).sum() + b.pow(2).sum() - d + logdet))
