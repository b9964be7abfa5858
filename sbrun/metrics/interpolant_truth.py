"""Exact fields of a stochastic interpolant between ``N(0, I)`` and an isotropic Gaussian
mixture (independent coupling), and a trained run's errors against them (seed 004).

With ``x0 ~ N(0, I)``, ``x1 ~ sum_k w_k N(mu_k, s_k^2 I)`` and ``z ~ N(0, I)`` independent,
``x_t = alpha_t x0 + beta_t x1 + gamma_t z`` is, given the component ``k``, Gaussian with
mean ``beta_t mu_k`` and per-coordinate variance ``v_k = alpha^2 + beta^2 s_k^2 + gamma^2``;
its velocity ``alpha' x0 + beta' x1 + gamma' z`` has covariance
``c_k = alpha alpha' + beta beta' s_k^2 + gamma gamma'`` with each coordinate of ``x_t``.
Gaussian conditioning and the responsibilities ``r_k(t, x)`` of that mixture give::

    b(t, x) = sum_k r_k [beta' mu_k + c_k / v_k (x - beta mu_k)],
    s(t, x) = sum_k r_k (beta mu_k - x) / v_k.

The KL bound of seed 004, ``KL(rho_1 || rho_hat_1) <= 1/(4 eps) int E|b_F - b_F_hat|^2``
with ``b_F = b + eps s``, is at most ``(E_b + eps^2 E_s) / (2 eps)`` for the integrated
squared errors ``E_b = int E|b_hat - b|^2 dt`` and ``E_s = int E|s_hat - s|^2 dt``; it is
smallest at ``eps* = (E_b / E_s)^(1/2)``: the slide's optimal diffusion level.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def mixture_fields(interpolant, weights: Tensor, means: Tensor, stds: Tensor, t: Tensor,
                   x: Tensor) -> tuple[Tensor, Tensor]:
    """``(b, s)`` at ``t: (B,)``, ``x: (B, d)``, float64, for the mixture ``(weights (K,),
    means (K, d), stds (K,))`` reached from ``N(0, I)`` by ``interpolant``."""
    x = x.double()
    c = interpolant.coefficients(t.double(), x)  # each (B, 1)
    s2 = stds.double().pow(2)[None, :]
    v = c.alpha_t ** 2 + c.beta_t ** 2 * s2 + c.gamma_t ** 2  # (B, K)
    cov = c.alpha_t * c.d_alpha_t + c.beta_t * c.d_beta_t * s2 + c.gamma_d_gamma_t
    mu = means.double()[None]  # (1, K, d)
    diff = x[:, None, :] - c.beta_t[:, :, None] * mu  # (B, K, d)
    logits = (weights.double().log()[None] - 0.5 * diff.pow(2).sum(-1) / v
              - 0.5 * x.shape[1] * v.log())
    r = torch.softmax(logits, dim=1)  # (B, K)
    s = -((r / v)[:, :, None] * diff).sum(1)
    b = (r[:, :, None] * (c.d_beta_t[:, :, None] * mu + (cov / v)[:, :, None] * diff)).sum(1)
    return b, s


@torch.no_grad()
def field_errors(method, nets, weights: Tensor, means: Tensor, stds: Tensor, n: int = 4096,
                 generator: torch.Generator | None = None,
                 t_range: tuple[float, float] = (0.0, 1.0)) -> dict[str, float]:
    """Integrated squared errors of a trained stochastic interpolant's fields.

    ``E_b`` and ``E_s`` (``t ~ U(t_range)``, ``x_t`` drawn from the interpolant, errors summed
    over coordinates; the learned score is ``method.score``, clipped in time as the sampler
    reads it) and ``eps_star = (E_b / E_s)^(1/2)``.
    """
    g = generator or torch.Generator().manual_seed(0)
    d = means.shape[1]
    lo, hi = t_range
    t = lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)
    k = torch.multinomial(weights.double(), n, replacement=True, generator=g)
    x1 = means.double()[k] + stds.double()[k, None] * torch.randn(n, d, generator=g, dtype=torch.float64)
    x0 = torch.randn(n, d, generator=g, dtype=torch.float64)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    xt = method.interpolant.sample(t, x0, x1, z)
    b, s = mixture_fields(method.interpolant, weights, means, stds, t, xt)
    dev = next(nets.parameters()).device
    xf, tf = xt.float().to(dev), t.float().to(dev)
    b_hat = method.fields(nets, xf, tf)[0].double().cpu()
    s_hat = method.score(nets, tf, xf).double().cpu()
    e_b = float((b_hat - b).pow(2).sum(1).mean())
    e_s = float((s_hat - s).pow(2).sum(1).mean())
    return {"E_b": e_b, "E_s": e_s, "eps_star": math.sqrt(e_b / e_s) if e_s > 0 else math.inf}
