"""Gaussians and isotropic Gaussian mixtures in ``d`` dimensions, with exact densities.

Parameters are kept in float64; ``sample`` returns ``dtype`` (float32 by default, the
package convention) and ``log_prob`` / ``score`` compute in the dtype of their input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from sbrun.data.distributions import Distribution
from sbrun.errors import ConfigError

_F64 = torch.float64
ArrayLike = Tensor | Sequence[float] | float


def _vector(v: ArrayLike, d: int, what: str) -> Tensor:
    """``v`` as a float64 ``(d,)`` tensor (a scalar is broadcast)."""
    t = torch.as_tensor(v, dtype=_F64)
    if t.dim() == 0:
        t = t.expand(d)
    if t.shape != (d,):
        raise ConfigError(f"{what} must have shape ({d},), got {tuple(t.shape)}")
    return t.clone()


class GaussianDistribution(Distribution):
    """``N(m, S)`` on ``R^d``; ``mean: (d,)``, ``cov: (d, d)`` symmetric positive definite.

    With ``S = L L^T`` (Cholesky): ``x = m + L z``, ``z ~ N(0, I)``;
    ``log p(x) = -1/2 (x - m)^T S^{-1} (x - m) - 1/2 log det(2 pi S)``;
    ``score(x) = grad log p(x) = -S^{-1} (x - m)``.
    """

    def __init__(
        self, mean: ArrayLike, cov: Tensor, name: str = "gaussian", dtype=torch.float32
    ):
        cov = torch.as_tensor(cov, dtype=_F64)
        if cov.dim() != 2 or cov.shape[0] != cov.shape[1]:
            raise ConfigError(f"{name}: cov must be square (d, d), got {tuple(cov.shape)}")
        d = cov.shape[0]
        self.mean = _vector(mean, d, f"{name}: mean")
        if not torch.allclose(cov, cov.T, rtol=1e-8, atol=1e-10):
            raise ConfigError(f"{name}: cov is not symmetric")
        self.cov = 0.5 * (cov + cov.T)
        chol, info = torch.linalg.cholesky_ex(self.cov)
        if int(info) != 0:
            raise ConfigError(f"{name}: cov is not positive definite")
        self.chol = chol
        self.shape = (d,)
        self.name = name
        self.dtype = dtype

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``(n, d)`` draws ``m + L z``."""
        z = torch.randn((n, self.shape[0]), generator=generator, dtype=_F64)
        return (self.mean + z @ self.chol.T).to(self.dtype)

    def _whiten(self, x: Tensor) -> Tensor:
        """``L^{-1} (x - m)`` for ``x: (B, d)`` -> ``(B, d)``."""
        diff = (x - self.mean.to(x)).T
        return torch.linalg.solve_triangular(self.chol.to(x), diff, upper=False).T

    def log_prob(self, x: Tensor) -> Tensor:
        """``(B, d)`` -> ``(B,)``."""
        y = self._whiten(x)
        logdet = 2.0 * self.chol.diagonal().log().sum().item()
        d = self.shape[0]
        return -0.5 * y.pow(2).sum(-1) - 0.5 * (d * math.log(2 * math.pi) + logdet)

    def score(self, x: Tensor) -> Tensor:
        """``-S^{-1} (x - m)``: ``(B, d)`` -> ``(B, d)``."""
        diff = (x - self.mean.to(x)).T
        return -torch.cholesky_solve(diff, self.chol.to(x)).T


def random_spd(
    d: int, generator: torch.Generator | None = None, cond: float = 10.0
) -> Tensor:
    """Random SPD ``(d, d)`` float64 matrix with condition number exactly ``cond``.

    ``S = Q diag(lam) Q^T`` with ``Q`` Haar-random orthogonal (QR of a Gaussian matrix,
    signs fixed) and ``log lam`` uniform on ``[0, log cond]`` with both end points
    included, then normalised so that ``trace(S) = d`` (mean variance 1: unit scale).
    For ``d = 1`` the result is ``[[1]]`` whatever ``cond``.
    """
    if d < 1:
        raise ConfigError(f"random_spd: d must be >= 1, got {d}")
    if not cond >= 1:
        raise ConfigError(f"random_spd: cond must be >= 1, got {cond}")
    a = torch.randn((d, d), generator=generator, dtype=_F64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(r.diagonal())[None, :]
    u = torch.rand(d, generator=generator, dtype=_F64)
    if d >= 2:
        u[0], u[1] = 0.0, 1.0
    else:
        u[0] = 0.0
    lam = torch.exp(u * math.log(cond))
    lam = lam / lam.mean()
    s = (q * lam[None, :]) @ q.T
    return 0.5 * (s + s.T)


def gaussian_pair(
    dim: int,
    seed: int,
    mean0: ArrayLike | None = None,
    cov0: Tensor | None = None,
    mean1: ArrayLike | None = None,
    cov1: Tensor | None = None,
    cond: float = 10.0,
) -> tuple[GaussianDistribution, GaussianDistribution]:
    """A source ``N(mean0, cov0)`` (t = 0) and target ``N(mean1, cov1)`` (t = 1).

    Defaults: ``mean0 = 0``, ``mean1 = (1, ..., 1)``, and ``cov0``, ``cov1`` two successive
    ``random_spd(dim, g, cond)`` draws from ``g = Generator().manual_seed(seed)``. A
    scalar mean is broadcast to ``(dim,)``.
    """
    g = torch.Generator().manual_seed(int(seed))
    c0 = random_spd(dim, g, cond)
    c1 = random_spd(dim, g, cond)
    s0 = c0 if cov0 is None else torch.as_tensor(cov0, dtype=_F64)
    s1 = c1 if cov1 is None else torch.as_tensor(cov1, dtype=_F64)
    m0 = 0.0 if mean0 is None else mean0
    m1 = 1.0 if mean1 is None else mean1
    return (
        GaussianDistribution(m0, s0, name="gaussian0"),
        GaussianDistribution(m1, s1, name="gaussian1"),
    )


class GaussianMixture(Distribution):
    """``p(x) = sum_k w_k N(x; mu_k, s_k^2 I)`` on ``R^d``.

    Args:
        weights: ``(K,)`` positive (normalised here).
        means: ``(K, d)``.
        std: common isotropic std (float) or per-component ``(K,)``.

    ``log p(x) = logsumexp_k [log w_k - |x - mu_k|^2 / (2 s_k^2) - d/2 log(2 pi s_k^2)]``;
    with responsibilities ``r_k(x) = softmax_k(.)``,
    ``score(x) = sum_k r_k(x) (mu_k - x) / s_k^2``.
    """

    def __init__(
        self,
        weights: ArrayLike,
        means: Tensor,
        std: ArrayLike = 1.0,
        name: str = "gmm",
        dtype=torch.float32,
    ):
        self.means = torch.as_tensor(means, dtype=_F64).clone()
        if self.means.dim() != 2:
            raise ConfigError(f"{name}: means must be (K, d), got {tuple(self.means.shape)}")
        k, d = self.means.shape
        w = _vector(weights, k, f"{name}: weights")
        if not bool((w > 0).all()):
            raise ConfigError(f"{name}: weights must be > 0")
        self.weights = w / w.sum()
        self.std = _vector(std, k, f"{name}: std")
        if not bool((self.std > 0).all()):
            raise ConfigError(f"{name}: std must be > 0")
        self.shape = (d,)
        self.name = name
        self.dtype = dtype

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``(n, d)``: component ``k ~ w``, then ``mu_k + s_k z``."""
        if n == 0:
            return torch.empty((0, self.shape[0]), dtype=self.dtype)
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn((n, self.shape[0]), generator=generator, dtype=_F64)
        return (self.means[k] + self.std[k, None] * z).to(self.dtype)

    def _component_logits(self, x: Tensor) -> Tensor:
        """``(B, K)``: ``log w_k + log N(x; mu_k, s_k^2 I)``."""
        mu, s2 = self.means.to(x), self.std.to(x).pow(2)
        sq = (x[:, None, :] - mu[None]).pow(2).sum(-1)
        d = self.shape[0]
        return self.weights.to(x).log() - 0.5 * sq / s2 - 0.5 * d * torch.log(2 * math.pi * s2)

    def log_prob(self, x: Tensor) -> Tensor:
        """``(B, d)`` -> ``(B,)``."""
        return torch.logsumexp(self._component_logits(x), dim=1)

    def score(self, x: Tensor) -> Tensor:
        """``(B, d)`` -> ``(B, d)``."""
        r = torch.softmax(self._component_logits(x), dim=1) / self.std.to(x).pow(2)
        return r @ self.means.to(x) - r.sum(1, keepdim=True) * x
