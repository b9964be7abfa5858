"""Scores against the closed-form Schrödinger bridge between Gaussians.

Both scores are *BW2-UVP*s (Korotin et al. 2021; Gushchin et al. 2023, "Building the
bridge of Schrödinger: a continuous entropic OT benchmark") in those papers' convention:
``100 * BW2^2 / (1/2 Var)`` with ``BW2^2`` the squared Bures-Wasserstein distance of the
*half* quadratic cost, ``1/2 (|m - m'|^2 + bures_sq(S, S'))``, between Gaussian fits, i.e.
``100 (|m - m'|^2 + bures_sq(S, S')) / Var`` with ``Var`` the total variance of the
reference, so that the trivial prediction ``N(mean, 0)`` scores about 100% (the published
benchmark code, ``compute_BW_UVP_with_gt_stats``, computes exactly this).
"""

from __future__ import annotations

import torch
from torch import Tensor

from sbrun.couplings.gaussian import gaussian_eot_plan, gaussian_sb_conditional
from sbrun.data.gaussians import Gaussian
from sbrun.errors import ConfigError
from sbrun.metrics.distances import bures_sq


def _cov(z: Tensor, dim: int) -> Tensor:
    """Unbiased covariance of the samples along ``dim`` of ``z: (..., k, d)``."""
    zc = z - z.mean(dim, keepdim=True)
    return zc.transpose(-1, -2) @ zc / (z.shape[dim] - 1)


def conditional_bw2_uvp(x1_model: Tensor, mu_true: Tensor, cov_true: Tensor,
                        total_var: float) -> float:
    """``100 * mean_i (|mu_i - mu*_i|^2 + bures_sq(S_i, S*_i)) / total_var``, in %.

    ``mu_i``, ``S_i``: sample mean and unbiased covariance of the draws ``x1_model[i]``
    (``S_i = 0`` with one draw); ``mu_true: (n, d)`` and ``cov_true: (n | 1, d, d)`` the true
    conditional moments; ``total_var``: ``tr Cov`` of the target. See the module docstring
    for the convention; shared by every oracle (Gaussian, entropic-OT benchmark).
    """
    if x1_model.dim() == 2:
        x1_model = x1_model[:, None, :]
    mu, cov = draw_moments(x1_model.to(mu_true.device))
    return moments_bw2_uvp(mu, cov, mu_true, cov_true, total_var)


def draw_moments(x1: Tensor) -> tuple[Tensor, Tensor]:
    """Sample mean ``(n, d)`` and unbiased covariance ``(n, d, d)`` (zero with one draw) of
    ``x1: (n, k, d)``, in float64."""
    n, k, d = x1.shape
    x1 = x1.double()
    return x1.mean(1), (_cov(x1, 1) if k > 1 else x1.new_zeros(n, d, d))


def moments_bw2_uvp(mu: Tensor, cov: Tensor, mu_true: Tensor, cov_true: Tensor,
                    total_var: float) -> float:
    """:func:`conditional_bw2_uvp` from the draws' moments (:func:`draw_moments`), so that
    many draws per point can be drawn and reduced a few points at a time."""
    n, d = mu.shape
    bw = (mu - mu_true).pow(2).sum(1) + bures_sq(cov_true.expand(n, d, d), cov)
    return float(100.0 * bw.mean() / total_var)


def streamed_moments(draw, x0: Tensor, k: int, rows: int = 1 << 18) -> tuple[Tensor, Tensor]:
    """Moments of ``k`` draws per point without holding all ``n k`` draws: ``draw(x, k) ->
    (m, k, d)`` is called on chunks of about ``rows / k`` points of ``x0: (n, d)``."""
    per = max(1, rows // max(k, 1))
    parts = [draw_moments(draw(x0[lo: lo + per], k)) for lo in range(0, x0.shape[0], per)]
    return torch.cat([m for m, _ in parts]), torch.cat([c for _, c in parts])


def cbw2_uvp(x0: Tensor, x1_model: Tensor, g0: Gaussian, g1: Gaussian, sigma: float) -> float:
    """Conditional BW2-UVP (Gushchin et al. 2023), in %.

    ``100 / tr B * mean_i (|mu_i - mu*_i|^2 + bures_sq(S_i, S*))`` where, for each source
    point ``x0_i``, ``mu_i`` and ``S_i`` are the sample mean and (unbiased) covariance of
    the model's ``k`` draws ``x1_model[i]``, ``mu*_i = m1 + C^T A^{-1} (x0_i - m0)`` and
    ``S* = B - C^T A^{-1} C`` the true SB conditional, and ``tr B`` the total variance of
    the target. The expectation over ``x0 ~ mu0`` is the average over the given ``x0``.

    With ``k = 1`` (a deterministic map, or ``x1_model: (n, d)``) ``S_i = 0`` and the
    score includes ``tr S*`` per point. With ``k`` draws a perfect sampler still scores
    about ``100 tr(S*) (1 + (d + 1) / 4) / (k tr B)`` (sampling noise of the fitted
    mean, ``tr S* / k``, and covariance, exact for isotropic ``S*`` to first order): use
    ``k`` in the hundreds for scores below 1%.

    Args:
        x0: ``(n, d)`` source points; x1_model: ``(n, k, d)`` or ``(n, d)`` model draws.
        g0, g1: source ``N(m0, A)`` and target ``N(m1, B)``; sigma: reference noise.
    """
    if x1_model.dim() == 2:
        x1_model = x1_model[:, None, :]
    n, k, d = x1_model.shape
    if x0.shape[0] != n or x0.reshape(n, -1).shape[1] != d or d != g1.dim:
        raise ConfigError(f"x0 {tuple(x0.shape)} and x1_model {tuple(x1_model.shape)} "
                          f"do not match Gaussians of dimension {g1.dim}")
    mu_true, cov_true = gaussian_sb_conditional(g0, g1, sigma, x0)
    return conditional_bw2_uvp(x1_model, mu_true, cov_true, float(g1.cov.trace()))


def plan_error(x0: Tensor, x1: Tensor, g0: Gaussian, g1: Gaussian, sigma: float) -> float:
    """BW2-UVP of the joint law of the pairs ``(x0_i, x1_i)``, in %.

    ``100 * (|m - m*|^2 + bures_sq(S, Sigma)) / tr Sigma`` where ``N(m, S)`` is the Gaussian fit
    (sample mean, unbiased covariance) of the ``(n, 2d)`` stacked pairs and
    ``pi = N([m0; m1], Sigma = [[A, C], [C^T, B]])`` the true SB plan. Cheaper than
    :func:`cbw2_uvp` (one draw per source point) but blind to non-Gaussian errors.

    Args:
        x0: ``(n, d)`` source points; x1: ``(n, d)``, where the model sent ``x0[i]``.
    """
    if x0.shape != x1.shape or x0.dim() != 2 or x0.shape[1] != g0.dim or x0.shape[0] < 2:
        raise ConfigError(f"x0 {tuple(x0.shape)} and x1 {tuple(x1.shape)} must both be "
                          f"(n >= 2, {g0.dim})")
    plan = gaussian_eot_plan(g0, g1, sigma)
    z = torch.cat([x0, x1], 1).double().to(plan.mean.device)
    bw = (z.mean(0) - plan.mean).pow(2).sum() + bures_sq(plan.cov, _cov(z, 0))
    return float(100.0 * bw / plan.cov.trace())


def coordinate_plan_kl(x0: Tensor, x1: Tensor, g0: Gaussian, g1: Gaussian, sigma: float) -> float:
    """``KL`` (nats) of a coupling of isotropic Gaussians against the Schrödinger bridge's.

    For ``N(m0 1, s0^2 I) -> N(m1 1, s1^2 I)`` and the reference ``dX = sigma dW`` (the DSBM
    paper's Gaussian problem: ``m1 = -m0``, unit variances) the bridge's plan is a product
    of ``d`` identical 2D Gaussians, one per coordinate ``(x0_i, x1_i)``. The pairs of every
    coordinate are pooled (``n d`` points), a 2D Gaussian fitted (mean, unbiased
    covariance), and its closed-form KL to the true 2D law is multiplied by ``d``: the KL of
    the product law. A full ``2d``-dimensional fit would be dominated by its estimation bias
    (about ``d^2 / n`` nats), this one's is about ``2.5 / n``. Blind to correlations between
    coordinates, which the problem's symmetry rules out for the bridge (not for a model).

    Args:
        x0: ``(n, d)`` source points; x1: ``(n, d)``, where the model sent ``x0[i]``.
    """
    from sbrun.metrics.kl import kl_gaussian

    d = g0.dim
    if x0.shape != x1.shape or x0.dim() != 2 or x0.shape[1] != d or x0.shape[0] < 2:
        raise ConfigError(f"x0 {tuple(x0.shape)} and x1 {tuple(x1.shape)} must both be "
                          f"(n >= 2, {d})")
    plan = gaussian_eot_plan(g0, g1, sigma)
    idx = torch.tensor([0, d])  # coordinate 1 of x0 and of x1: every coordinate alike
    mean, cov = plan.mean[idx], plan.cov[idx][:, idx]
    iso = all(torch.allclose(m, m[:1].expand_as(m)) for m in (plan.mean[:d], plan.mean[d:])) and \
        torch.allclose(plan.cov, torch.kron(cov, torch.eye(d, dtype=cov.dtype, device=cov.device)))
    if not iso:
        raise ConfigError("coordinate_plan_kl needs isotropic Gaussians N(m 1, s^2 I) at both ends "
                          "(data=gaussian2gaussian data.cond=1 with scalar means)")
    z = torch.stack([x0.double().reshape(-1), x1.double().reshape(-1)], 1).to(mean.device)
    return d * kl_gaussian(z.mean(0), _cov(z, 0), mean, cov)
