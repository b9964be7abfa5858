"""An entropic-OT problem with a known plan (Gushchin et al., NeurIPS 2023, "Building the
Bridge of Schrödinger: a continuous entropic optimal transport benchmark").

A plan of the form ``pi(x, y) = a(x) b(y) exp(-|x - y|^2 / (2 eps))`` is the entropic OT
plan (cost ``|x - y|^2 / 2``, regularisation ``eps``) between its own marginals, i.e. the
static Schrödinger bridge of ``dX = sigma dW`` with ``eps = sigma^2``. Take a Gaussian
source ``p0`` and a Gaussian mixture ``b(y) = sum_n p_n N(y | mu_n, Sigma_n)``; then

    pi(y | x) ∝ N(y | x, eps I) b(y) = sum_n w_n(x) N(y | P_n (Sigma_n^{-1} mu_n + x / eps), P_n),
    P_n = (Sigma_n^{-1} + I / eps)^{-1},   w_n(x) ∝ p_n N(x | mu_n, Sigma_n + eps I),

a Gaussian mixture (the benchmark's ``ConditionalPlan``), and the target is
``p1(y) = ∫ p0(x) pi(y | x) dx``: draw ``x ~ p0`` then ``y ~ pi(. | x)``. Small ``eps``
keeps ``p1`` close to ``p0``; large ``eps`` pulls it towards ``b``.

This is the benchmark's *construction*, not its files (they are downloaded; runs here are
offline): ``p0 = N(0, I_D)``, ``b`` with ``n_components`` components with means
``mu_n ~ N(0, mean_std^2 I_D)`` and covariances ``component_var`` times a random SPD
matrix of condition number ``cond`` (mean variance 1), weights uniform on ``[1, 2]``
(normalised), all drawn from ``seed``. The spread of the means grows with ``D`` like the
components' own variance, so the conditionals stay narrow against the target in every
dimension (the finite-sample floor of the score, ``cbw2_uvp_floor``, stays small).
Numbers are comparable in kind, not digit for digit, with the published table.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sbrun.data.distributions import Distribution, Problem
from sbrun.data.gaussians import Gaussian, random_spd
from sbrun.data.truth import KnownPlan
from sbrun.errors import ConfigError

_F64 = torch.float64


class ConditionalGMMPlan:
    """``pi(y | x) ∝ N(y | x, eps I) sum_n p_n N(y | mu_n, Sigma_n)``, exact (float64).

    Args:
        weights: ``(N,)`` positive; means: ``(N, D)``; covs: ``(N, D, D)`` SPD; eps > 0.
    """

    def __init__(self, weights: Tensor, means: Tensor, covs: Tensor, eps: float):
        if not eps > 0:
            raise ConfigError(f"eot_benchmark: eps must be > 0, got {eps}")
        self.weights = torch.as_tensor(weights, dtype=_F64) / torch.as_tensor(weights, dtype=_F64).sum()
        self.means = torch.as_tensor(means, dtype=_F64)
        self.covs = torch.as_tensor(covs, dtype=_F64)
        self.eps = float(eps)
        n, d = self.means.shape
        eye = torch.eye(d, dtype=_F64)
        # P_n = (Sigma^-1 + I/eps)^-1 = Sigma (Sigma + eps I)^-1 eps
        self.kernel_cov = self.covs + self.eps * eye  # Sigma_n + eps I: the weights' Gaussian
        self.kernel_chol = torch.linalg.cholesky(self.kernel_cov)
        self.kernel_chol_inv = torch.linalg.inv(self.kernel_chol)  # matrix products, not solves
        self.P = self.eps * torch.linalg.solve(self.kernel_cov, self.covs)
        self.P = 0.5 * (self.P + self.P.transpose(-1, -2))
        self.P_chol = torch.linalg.cholesky(self.P)
        self.bias = torch.einsum("nde,ne->nd", self.P, torch.linalg.solve(self.covs, self.means))

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def log_weights(self, x: Tensor) -> Tensor:
        """``log w_n(x)``, normalised: ``(B, D)`` -> ``(B, N)``."""
        x = x.to(_F64)
        z = torch.stack([(x - mu) @ li.T for mu, li in zip(self.means, self.kernel_chol_inv)], 1)
        logdet = 2 * self.kernel_chol.diagonal(dim1=-2, dim2=-1).log().sum(1)
        logit = self.weights.log()[None] - 0.5 * (z.pow(2).sum(-1) + logdet[None])
        return torch.log_softmax(logit, dim=1)

    def component_means(self, x: Tensor) -> Tensor:
        """``P_n (Sigma_n^{-1} mu_n + x / eps)``: ``(B, D)`` -> ``(B, N, D)``."""
        return self.bias[None] + torch.einsum("nde,be->bnd", self.P, x.to(_F64)) / self.eps

    def moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean ``(B, D)`` and covariance ``(B, D, D)`` of ``pi(. | x)`` (mixture moments)."""
        w = self.log_weights(x).exp()
        m = self.component_means(x)
        mean = (w[..., None] * m).sum(1)
        dev = m - mean[:, None, :]
        cov = torch.einsum("bn,nde->bde", w, self.P) + torch.einsum("bn,bnd,bne->bde", w, dev, dev)
        return mean, cov

    def sample(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One draw of ``y ~ pi(. | x)`` per row: ``(B, D)`` -> ``(B, D)`` float64."""
        x = x.to(_F64)
        idx = torch.multinomial(self.log_weights(x).exp(), 1, generator=generator)[:, 0]
        z = torch.randn(x.shape, generator=generator, dtype=_F64)
        y = torch.empty_like(x)
        for n in idx.unique().tolist():  # one matrix product per component
            rows = idx == n
            y[rows] = (self.bias[n] + x[rows] @ self.P[n].T / self.eps
                       + z[rows] @ self.P_chol[n].T)
        return y

    def sample_repeated(self, x: Tensor, k: int,
                        generator: torch.Generator | None = None) -> Tensor:
        """``k`` draws of ``pi(. | x_i)`` per row: ``(n, D)`` -> ``(n, k, D)`` float64 (the
        weights and means once per row, not once per draw)."""
        x = x.to(_F64)
        w, m = self.log_weights(x).exp(), self.component_means(x)  # (n, N), (n, N, D)
        idx = torch.multinomial(w, k, replacement=True, generator=generator)  # (n, k)
        z = torch.randn((*idx.shape, self.dim), generator=generator, dtype=_F64)
        y = torch.gather(m, 1, idx[..., None].expand(*idx.shape, self.dim))
        for n in range(self.means.shape[0]):  # one matrix product per component
            rows = idx == n
            y[rows] += z[rows] @ self.P_chol[n].T
        return y

    def total_variance(self, x: Tensor) -> float:
        """``tr Cov(Y)`` for ``Y ~ pi(. | X)``, ``X`` the rows of ``x: (B, D)``:
        ``E[sum_n w_n (tr P_n + |m_n|^2)] - |E[sum_n w_n m_n]|^2`` (Monte Carlo over ``x``)."""
        w = self.log_weights(x).exp()
        m = self.component_means(x)
        second = (w * (self.P.diagonal(dim1=-2, dim2=-1).sum(-1)[None] + m.pow(2).sum(-1))).sum(1)
        mean = (w[..., None] * m).sum(1).mean(0)
        return float(second.mean() - mean.pow(2).sum())


class BenchmarkTarget(Distribution):
    """``p1``: draw ``x ~ source``, then ``y ~ pi(. | x)`` (``(n, D)`` float32)."""

    def __init__(self, source: Distribution, plan: ConditionalGMMPlan, name: str):
        self.source, self.plan, self.name = source, plan, name
        self.shape = tuple(source.shape)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        x = self.source.sample(n, generator)
        return self.plan.sample(x, generator).float()


def eot_benchmark(dim: int = 2, eps: float | None = None, reference_sigma: float | None = None,
                  n_components: int = 5, mean_std: float = 1.0, component_var: float = 0.1,
                  cond: float = 4.0, seed: int = 0, oracle_points: int = 100,
                  oracle_repeats: int = 1000, name: str = "eot_benchmark") -> Problem:
    """The benchmark pair ``(p0, p1)`` of dimension ``dim`` for ``eps`` (module docstring).

    ``eps``: the benchmark's epsilon; ``None`` takes the run's ``sde.sigma^2``
    (``reference_sigma``, read from the config), and a given ``eps`` must agree with it: one
    epsilon per run. The problem declares its truth, a :class:`~sbrun.data.truth.KnownPlan`
    (the plan, scored on ``oracle_points`` held-out source points with ``oracle_repeats``
    draws each).
    """
    if dim < 1 or n_components < 1:
        raise ConfigError(f"eot_benchmark: dim and n_components must be >= 1, got {dim}, {n_components}")
    if not (mean_std >= 0 and component_var > 0 and cond >= 1):
        raise ConfigError("eot_benchmark: need mean_std >= 0, component_var > 0, cond >= 1")
    if eps is None and reference_sigma is None:
        raise ConfigError("data=eot_benchmark needs data.eps or a Brownian reference (sde.sigma)")
    if eps is None:
        eps = float(reference_sigma) ** 2
    if not eps > 0:
        raise ConfigError(f"data.eps must be > 0, got {eps}")
    if reference_sigma is not None and not math.isclose(eps, reference_sigma**2, rel_tol=1e-6):
        raise ConfigError(f"data.eps={eps:g} but the reference has eps = sde.sigma^2 = "
                          f"{reference_sigma**2:g}: set sde.sigma={math.sqrt(eps):.6g}")
    g = torch.Generator().manual_seed(int(seed))
    means = float(mean_std) * torch.randn(n_components, dim, generator=g, dtype=_F64)
    covs = torch.stack([component_var * random_spd(dim, g, cond) for _ in range(n_components)])
    weights = 1 + torch.rand(n_components, generator=g, dtype=_F64)
    plan = ConditionalGMMPlan(weights, means, covs, eps)
    source = Gaussian(torch.zeros(dim), torch.eye(dim, dtype=_F64), name="gaussian")
    target = BenchmarkTarget(source, plan, f"eot_benchmark_d{dim}_eps{eps:g}")
    truth = KnownPlan(plan, points=int(oracle_points), repeats=int(oracle_repeats), seed=int(seed))
    return Problem(name, target, source, truth=truth)
