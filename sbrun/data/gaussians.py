"""sbrun's one Gaussian type, random covariances, and isotropic Gaussian mixtures.

:class:`Gaussian` serves data (``data=gaussian2gaussian``), the closed-form couplings of
:mod:`sbrun.couplings.gaussian` and the laws of reference SDEs (``ReferenceSDE.marginal``
and ``bridge``: one isotropic law per row). Data parameters are kept in float64;
``sample`` returns ``dtype`` (float32 by default, the package convention) and
``log_prob`` / ``score`` compute in the dtype of their input.
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


def symmetric_part(S: Tensor) -> Tensor:
    """``(S + S^T) / 2`` over the last two axes."""
    return 0.5 * (S + S.transpose(-1, -2))


def sqrtm_psd(S: Tensor, power: float = 0.5) -> Tensor:
    """``S^power`` of symmetric PSD ``S: (..., d, d)`` via ``eigh`` (float64).

    Negative eigenvalues from round-off are clipped to 0; for negative ``power`` the
    matrix must be positive definite.
    """
    w, V = torch.linalg.eigh(symmetric_part(S.double()))
    w = w.clamp_min(0.0) ** power
    return symmetric_part((V * w.unsqueeze(-2)) @ V.transpose(-1, -2))


class Gaussian(Distribution):
    """A Gaussian law in one of two forms (give exactly one of ``cov`` and ``std``).

    * **full**, ``Gaussian(mean, cov)``: ``N(m, S)`` on ``R^d``; ``mean: (d,)`` (a scalar
      is broadcast), ``cov: (d, d)`` symmetric positive semi-definite, both float64.
      ``sample(n)``: ``(n, d)`` draws ``x = m + L z``, ``z ~ N(0, I)``, ``L`` the Cholesky
      factor of ``S`` (``S^{1/2}`` for a singular ``S``, e.g. a deterministic plan);
      ``log p(x) = -1/2 (x - m)^T S^{-1} (x - m) - 1/2 log det(2 pi S)``,
      ``score(x) = -S^{-1} (x - m)`` (``S`` positive definite).
    * **isotropic, one law per row**, ``Gaussian(mean, std=s)``: ``N(mean[i], s[i]^2 I)``;
      ``mean: (B, *D)``, ``std`` a tensor broadcastable to ``mean`` (``(B, 1, ..)`` or a
      scalar; a full-shape ``std`` is a diagonal law), kept in the dtype and device of
      ``mean`` (the laws of reference SDEs). ``sample()`` draws one point per row.

    ``shape`` is one point's shape: ``(d,)``, or ``D`` for the per-row form.
    """

    def __init__(self, mean: ArrayLike, cov: Tensor | None = None, *, std: Tensor | float | None = None,
                 name: str = "gaussian", dtype: torch.dtype = torch.float32):
        if (cov is None) == (std is None):
            raise ConfigError(f"{name}: give exactly one of cov (a full law) and std (one "
                              "isotropic law per row)")
        self.name = name
        if std is not None:
            self.mean, self.cov, self.chol, self.factor = mean, None, None, None
            self.std = std if isinstance(std, Tensor) else torch.tensor(
                float(std), dtype=mean.dtype, device=mean.device)
            self.shape, self.dtype = tuple(mean.shape[1:]), mean.dtype
            return
        cov = torch.as_tensor(cov, dtype=_F64)
        if cov.dim() != 2 or cov.shape[0] != cov.shape[1]:
            raise ConfigError(f"{name}: cov must be square (d, d), got {tuple(cov.shape)}")
        self.mean = _vector(mean, cov.shape[0], f"{name}: mean").to(cov.device)
        if not torch.allclose(cov, cov.T, rtol=1e-8, atol=1e-10):
            raise ConfigError(f"{name}: cov is not symmetric")
        self.cov, self.std, self.shape, self.dtype = symmetric_part(cov), None, (cov.shape[0],), dtype
        chol, info = torch.linalg.cholesky_ex(self.cov)
        self.chol = chol if int(info) == 0 else None  # None: singular, no density
        if self.chol is None:
            w = torch.linalg.eigvalsh(self.cov)
            if float(w.min()) < -1e-9 * max(1.0, float(w.abs().max())):
                raise ConfigError(f"{name}: cov is not positive semi-definite")
        self.factor = self.chol if self.chol is not None else sqrtm_psd(self.cov)

    @property
    def isotropic(self) -> bool:
        """The per-row form ``N(mean[i], std[i]^2 I)``."""
        return self.cov is None

    def sample(self, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Full form: ``(n, d)`` draws ``m + z L^T`` (``z: (n, d)`` float64 from
        ``generator``), in ``dtype``. Per-row form: one draw per row, the shape of ``mean``
        (``n``, if given, must be the number of rows)."""
        if self.isotropic:
            if n is not None and n != self.mean.shape[0]:
                raise ConfigError(f"{self.name}: one draw per row: n must be "
                                  f"{self.mean.shape[0]}, got {n}")
            noise = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype)
            return self.mean + self.std * noise.to(self.mean.device)
        if n is None:
            raise ConfigError(f"{self.name}: sample(n) needs the number of draws n")
        dev = generator.device if generator is not None else self.mean.device
        z = torch.randn((n, self.shape[0]), generator=generator, dtype=_F64, device=dev)
        return (self.mean + z.to(self.mean.device) @ self.factor.T).to(self.dtype)

    def _cholesky(self, x: Tensor) -> Tensor:
        """The Cholesky factor in the dtype / device of ``x`` (full form, ``S`` definite)."""
        if self.chol is None:
            raise ConfigError(f"{self.name}: cov is singular: no density")
        return self.chol.to(x)

    def log_prob(self, x: Tensor) -> Tensor:
        """``x: (B, *shape)`` -> ``(B,)``, in the dtype of ``x``."""
        if self.isotropic:
            s = self.std.to(x).expand_as(x)
            sq = ((x - self.mean.to(x)) / s).pow(2) + 2 * s.log() + math.log(2 * math.pi)
            return -0.5 * sq.flatten(1).sum(1)
        L = self._cholesky(x)
        y = torch.linalg.solve_triangular(L, (x - self.mean.to(x)).T, upper=False).T
        logdet = 2.0 * self.chol.diagonal().log().sum().item()
        return -0.5 * y.pow(2).sum(-1) - 0.5 * (self.shape[0] * math.log(2 * math.pi) + logdet)

    def score(self, x: Tensor) -> Tensor:
        """``grad log p``: ``-S^{-1} (x - m)`` (full) or ``-(x - m) / std^2``; shape of ``x``."""
        if self.isotropic:
            return -(x - self.mean.to(x)) / self.std.to(x).pow(2)
        diff = (x - self.mean.to(x)).T
        return -torch.cholesky_solve(diff, self._cholesky(x)).T


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
) -> tuple[Gaussian, Gaussian]:
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
        Gaussian(m0, s0, name="gaussian0"),
        Gaussian(m1, s1, name="gaussian1"),
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
