"""Closed-form entropic OT / Schrödinger bridge between Gaussians.

For ``mu0 = N(m0, A)``, ``mu1 = N(m1, B)`` and the reference ``dX = sigma dW`` the static
SB is entropic OT with cost ``|x - y|^2 / 2`` and ``eps = sigma^2``; its plan is Gaussian
(Janati et al. 2020, "Entropic OT between unbalanced Gaussian measures has a closed
form"; Bunne et al. 2023, "The Schrödinger bridge between Gaussian measures has a closed
form")::

    D = (4 A^{1/2} B A^{1/2} + sigma^4 I)^{1/2}
    C = Cov(x0, x1) = 1/2 (A^{1/2} D A^{-1/2} - sigma^2 I)
    pi = N([m0; m1], [[A, C], [C^T, B]])

and the bridge marginal is ``x_t = (1 - t) x0 + t x1 + sigma sqrt(t (1 - t)) z``. As
``sigma -> 0``, ``C -> A T`` with ``T`` the W2 (Bures) Monge map. All matrix functions are
computed in float64 through ``eigh`` (``A`` must be positive definite; ``B`` may be
singular). The laws are :class:`sbrun.data.gaussians.Gaussian` (full form).
"""

from __future__ import annotations

import torch
from torch import Tensor

from sbrun.data.gaussians import Gaussian, sqrtm_psd, symmetric_part
from sbrun.errors import ConfigError

F64 = torch.float64


class GaussianPlan(Gaussian):
    """The static SB plan, the joint law of ``(x0, x1)``: a full :class:`Gaussian` with
    ``mean: (2d,)``, ``cov: (2d, 2d)`` (singular at ``sigma = 0``) and
    ``cross = Cov(x0, x1): (d, d)``; ``sample`` returns float64."""

    def __init__(self, mean: Tensor, cov: Tensor, cross: Tensor):
        super().__init__(mean, cov, name="plan", dtype=F64)
        self.cross = cross


def _check(g0: Gaussian, g1: Gaussian, sigma: float) -> float:
    if g0.dim != g1.dim:
        raise ConfigError(f"Gaussians of different dimension: {g0.dim} and {g1.dim}")
    if not sigma >= 0:
        raise ConfigError(f"sigma must be >= 0, got {sigma}")
    return float(sigma)


def gaussian_cross_cov(g0: Gaussian, g1: Gaussian, sigma: float) -> Tensor:
    """``C = Cov(x0, x1) = 1/2 (A^{1/2} D A^{-1/2} - sigma^2 I)``, ``(d, d)``,
    ``D = (4 A^{1/2} B A^{1/2} + sigma^4 I)^{1/2}`` (``sigma = 0``: the OT plan)."""
    s2 = _check(g0, g1, sigma) ** 2
    eye = torch.eye(g0.dim, dtype=torch.float64, device=g0.cov.device)
    Ah, Aih = sqrtm_psd(g0.cov), sqrtm_psd(g0.cov, -0.5)
    D = sqrtm_psd(4.0 * Ah @ g1.cov @ Ah + s2 * s2 * eye)
    return 0.5 * (Ah @ D @ Aih - s2 * eye)


def gaussian_eot_plan(g0: Gaussian, g1: Gaussian, sigma: float) -> GaussianPlan:
    """The static SB / entropic OT plan ``N([m0; m1], [[A, C], [C^T, B]])``."""
    C = gaussian_cross_cov(g0, g1, sigma)
    cov = torch.cat([torch.cat([g0.cov, C], 1), torch.cat([C.T, g1.cov], 1)], 0)
    return GaussianPlan(torch.cat([g0.mean, g1.mean]), cov, C)


def gaussian_sb_marginal(g0: Gaussian, g1: Gaussian, sigma: float, t: float) -> Gaussian:
    """SB marginal at time ``t``: ``N((1-t) m0 + t m1, Sigma_t)`` with
    ``Sigma_t = (1-t)^2 A + t^2 B + t (1-t) (C + C^T + sigma^2 I)``."""
    if not 0.0 <= t <= 1.0:
        raise ConfigError(f"t must be in [0, 1], got {t}")
    C = gaussian_cross_cov(g0, g1, sigma)
    eye = torch.eye(g0.dim, dtype=torch.float64, device=g0.cov.device)
    cov = (1 - t) ** 2 * g0.cov + t**2 * g1.cov + t * (1 - t) * (C + C.T + sigma**2 * eye)
    return Gaussian((1 - t) * g0.mean + t * g1.mean, cov, name=f"sb_marginal(t={t:g})", dtype=F64)


def gaussian_sb_fields(g0: Gaussian, g1: Gaussian, sigma: float):
    """Closed-form velocity and score of the SB marginals (a test oracle for [SF]2M).

    With ``x_t = (1-t) x0 + t x1 + sigma sqrt(t(1-t)) z`` under the SB plan, the
    probability-flow velocity is ``v(t, x) = E[x1 - x0 + (1-2t)/(2 t(1-t)) (x_t - mu_t)
    | x_t = x] = m1 - m0 + K_t (x - m_t)``, ``K_t = [(1-t)(C^T - A) + t (B - C) +
    (1-2t)/2 sigma^2 I] Sigma_t^{-1}``, and the score ``s(t, x) = -Sigma_t^{-1} (x - m_t)``
    (``m_t``, ``Sigma_t``: :func:`gaussian_sb_marginal`). ``dX = [v + sigma^2/2 s] dt +
    sigma dW`` is then the Schrödinger bridge (Tong et al. 2024, [SF]2M).

    Returns ``(velocity, score)``, each ``f(t: float, x: (n, d)) -> (n, d)`` float64, for
    ``0 < t < 1``.
    """
    C = gaussian_cross_cov(g0, g1, sigma)
    eye = torch.eye(g0.dim, dtype=torch.float64, device=g0.cov.device)

    def _marginal(t: float):
        m = gaussian_sb_marginal(g0, g1, sigma, t)
        return m.mean, torch.linalg.inv(m.cov)

    def velocity(t: float, x: Tensor) -> Tensor:
        mt, P = _marginal(t)
        cov_ux = (1 - t) * (C.T - g0.cov) + t * (g1.cov - C) + 0.5 * (1 - 2 * t) * sigma**2 * eye
        return g1.mean - g0.mean + (x.double() - mt) @ (cov_ux @ P).T

    def score(t: float, x: Tensor) -> Tensor:
        mt, P = _marginal(t)
        return -(x.double() - mt) @ P

    return velocity, score


def gaussian_sb_conditional(g0: Gaussian, g1: Gaussian, sigma: float,
                            x0: Tensor) -> tuple[Tensor, Tensor]:
    """Law of ``x1 | x0`` under the SB plan.

    Args:
        x0: ``(n, d)`` source points.

    Returns:
        ``mean (n, d) = m1 + C^T A^{-1} (x0 - m0)`` and the common covariance
        ``(d, d) = B - C^T A^{-1} C``.
    """
    C = gaussian_cross_cov(g0, g1, sigma)
    K = torch.linalg.solve(g0.cov, C)  # A^{-1} C, so C^T A^{-1} x = (x^T K)^T
    x0 = x0.to(device=g0.mean.device, dtype=torch.float64)
    mean = g1.mean + (x0.reshape(x0.shape[0], -1) - g0.mean) @ K
    cov = symmetric_part(g1.cov - C.T @ K)
    return mean, cov


def gaussian_monge_map(g0: Gaussian, g1: Gaussian) -> Tensor:
    """W2 Monge map ``x -> m1 + T (x - m0)``, ``T = A^{-1/2} (A^{1/2} B A^{1/2})^{1/2}
    A^{-1/2}`` (symmetric, ``(d, d)``); the ``sigma -> 0`` limit of the SB plan."""
    Ah, Aih = sqrtm_psd(g0.cov), sqrtm_psd(g0.cov, -0.5)
    return symmetric_part(Aih @ sqrtm_psd(Ah @ g1.cov @ Ah) @ Aih)
