"""Noising SDEs of diffusion models: ``dX = f(s) X ds + g(s) dW`` in noising time ``s``.

A noising SDE runs in its **own** time ``s in [0, 1]``: data at ``s = 0``, the prior
at ``s = 1`` (Song et al. 2021, eq. 5). Its marginal is Gaussian,

    X_s | X_0 = x0  ~  N(alpha_s x0, sigma_s^2 I),

with ``f = d log alpha_s / ds`` and ``g^2 = d sigma_s^2 / ds - 2 f sigma_s^2``. sbrun's
generative time runs the other way (prior = source at ``t = 0``, data = target at
``t = 1``); :meth:`NoisingSDE.to_noising_time` is the one conversion,

    s(t) = 1 - (1 - s_min) t,        ds/dt = -(1 - s_min),

where ``s_min`` is the small noising time at which generation stops (the score of
VP/VE marginals blows up at ``s = 0``). Every method below takes and returns noising
time ``s``; ``drift``, ``diffusion``, ``marginal``, ``bridge`` and ``bridge_drift`` are
the forward (noising) process.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sbrun.data.distributions import StandardGaussian
from sbrun.data.gaussians import Gaussian
from sbrun.errors import ConfigError
from sbrun.sde.base import ReferenceSDE, expand_t


def _as_time(s, like: Tensor | None = None) -> Tensor:
    """``s`` as a float64 tensor (a scalar stays 0-d); the coefficients are computed in float64."""
    return torch.as_tensor(s, dtype=torch.float64,
                           device=None if like is None else like.device)


def gaussian_posterior(alpha_r: Tensor, var_r: Tensor, alpha_s: Tensor, var_s: Tensor,
                       x0: Tensor, x_s: Tensor) -> Gaussian:
    """Law of ``X_r`` given ``X_0 = x0`` and ``X_s = x_s`` (``r < s``) of a linear SDE.

    With the transition ``X_s | X_r ~ N(a x_r, v)``, ``a = alpha_s / alpha_r``,
    ``v = var_s - a^2 var_r`` (Markov property), conditioning the joint Gaussian gives

        mean = alpha_r x0 + (a var_r / var_s) (x_s - alpha_s x0),
        var  = var_r v / var_s.

    It is DDPM's ``q(x_{t-1} | x_t, x_0)`` (Ho et al. 2020, eq. 7) for a single step and
    the bridge pinned at ``(x0, x_s)`` in general. Coefficients broadcast against
    ``x0, x_s: (B, *D)``.
    """
    a = alpha_s / alpha_r
    v = (var_s - a**2 * var_r).clamp_min(0.0)
    gain = a * var_r / var_s
    mean = alpha_r * x0 + gain * (x_s - alpha_s * x0)
    return Gaussian(mean, std=(var_r * v / var_s).clamp_min(0.0).sqrt())


class NoisingSDE(ReferenceSDE):
    """Base of VP / sub-VP / VE (and Brownian noising): linear SDEs with Gaussian marginals.

    Subclasses implement, for ``s: (B,)`` float64, ``log_alpha(s)``, ``d_log_alpha(s)``,
    ``var(s)`` (= ``sigma_s^2``) and ``d_var(s)``; everything else follows.

    Args:
        s_min: noising time where generation stops and training starts (``s in [s_min, 1]``).
    """

    name = "noising"
    prior_std = 1.0  # std of the isotropic Gaussian prior N(0, prior_std^2 I)

    def __init__(self, s_min: float = 1e-3):
        if not 0.0 <= s_min < 1.0:
            raise ConfigError(f"sde.s_min must be in [0, 1), got {s_min}")
        self.s_min = float(s_min)

    # -- the four coefficients (subclasses) ---------------------------------------
    def log_alpha(self, s: Tensor) -> Tensor:
        raise NotImplementedError

    def d_log_alpha(self, s: Tensor) -> Tensor:
        raise NotImplementedError

    def var(self, s: Tensor) -> Tensor:
        raise NotImplementedError

    def d_var(self, s: Tensor) -> Tensor:
        raise NotImplementedError

    # -- time -----------------------------------------------------------------------
    def to_noising_time(self, t: Tensor | float) -> Tensor:
        """sbrun time ``t`` (prior at 0, data at 1) -> noising time ``s = 1 - (1 - s_min) t``."""
        return 1.0 - (1.0 - self.s_min) * _as_time(t, t if isinstance(t, Tensor) else None)

    def to_sbrun_time(self, s: Tensor | float) -> Tensor:
        """Inverse of :meth:`to_noising_time`: ``t = (1 - s) / (1 - s_min)``."""
        return (1.0 - _as_time(s, s if isinstance(s, Tensor) else None)) / (1.0 - self.s_min)

    @property
    def ds_dt(self) -> float:
        """``ds/dt = -(1 - s_min)``: converts noising-time rates to sbrun time."""
        return -(1.0 - self.s_min)

    # -- the process ------------------------------------------------------------------
    def coefficients(self, s: Tensor | float, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha_s, sigma_s)`` shaped ``(B, 1, ..)`` against ``x: (B, *D)``, dtype of ``x``."""
        s = _as_time(s, x)
        alpha, sigma = self.log_alpha(s).exp(), self.var(s).clamp_min(0).sqrt()
        return expand_t(alpha, x).to(x.dtype), expand_t(sigma, x).to(x.dtype)

    def drift(self, s: Tensor, x: Tensor) -> Tensor:
        """``f(s) x`` with ``f = d log alpha / ds``; ``x: (B, *D)``."""
        return expand_t(self.d_log_alpha(_as_time(s, x)), x).to(x.dtype) * x

    def diffusion(self, s: Tensor) -> Tensor:
        """``g(s) = sqrt(d var/ds - 2 f var)``; ``s: (B,)`` -> ``(B,)`` float64."""
        s = _as_time(s)
        return (self.d_var(s) - 2 * self.d_log_alpha(s) * self.var(s)).clamp_min(0).sqrt()

    def marginal(self, s: Tensor, x0: Tensor) -> Gaussian:
        """``X_s | X_0 = x0 ~ N(alpha_s x0, sigma_s^2 I)``; ``x0: (B, *D)``."""
        alpha, sigma = self.coefficients(s, x0)
        return Gaussian(alpha * x0, std=sigma)

    def posterior(self, r: Tensor | float, s: Tensor | float, x0: Tensor, x_s: Tensor) -> Gaussian:
        """Law of ``X_r`` given ``X_0 = x0`` and ``X_s = x_s`` for ``r < s``."""
        r64, s64 = _as_time(r, x0), _as_time(s, x0)

        def col(v):
            return expand_t(v, x0).to(x0.dtype)

        return gaussian_posterior(col(self.log_alpha(r64).exp()), col(self.var(r64)),
                                  col(self.log_alpha(s64).exp()), col(self.var(s64)), x0, x_s)

    def bridge(self, s: Tensor, x0: Tensor, x1: Tensor) -> Gaussian:
        """The noising process pinned at ``x0`` (``s = 0``) and ``x1`` (``s = 1``), at ``s``."""
        return self.posterior(s, 1.0, x0, x1)

    def bridge_drift(self, s: Tensor, x: Tensor, x1: Tensor) -> Tensor:
        """Doob h-transform to end at ``x1`` (``s = 1``): ``f x + g^2 grad log p(x1 | x_s = x)``."""
        s64 = _as_time(s, x)
        a = (self.log_alpha(_as_time(1.0, x)) - self.log_alpha(s64)).exp()
        v = self.var(_as_time(1.0, x)) - a**2 * self.var(s64)
        g2 = self.diffusion(s64) ** 2
        a, v, g2 = (expand_t(c, x).to(x.dtype) for c in (a, v, g2))
        return self.drift(s, x) + g2 * a * (x1 - a * x) / v.clamp_min(1e-12)

    def transition(self, r0: Tensor, r1: Tensor) -> tuple[Tensor, Tensor]:
        """Exact kernel in run time ``r`` (data at ``r = 0``, noising time ``s = s_min +
        (1 - s_min) r``): ``scale = alpha_{s1} / alpha_{s0}``, ``std^2 = sigma_{s1}^2 -
        scale^2 sigma_{s0}^2``."""
        sa, sb = (self.s_min + (1 - self.s_min) * _as_time(r) for r in (r0, r1))
        scale = (self.log_alpha(sb) - self.log_alpha(sa)).exp()
        return scale, (self.var(sb) - scale**2 * self.var(sa)).clamp_min(0).sqrt()

    def as_noising(self) -> NoisingSDE:
        return self

    # -- the prior ----------------------------------------------------------------------
    def prior(self, n: int, shape: tuple[int, ...], generator=None) -> Tensor:
        """``(n, *shape)`` draws of ``N(0, prior_std^2 I)``."""
        return self.prior_std * torch.randn((n, *shape), generator=generator)

    def prior_distribution(self, shape: tuple[int, ...]) -> StandardGaussian:
        """The prior as a :class:`~sbrun.data.distributions.Distribution` (with ``log_prob``)."""
        return StandardGaussian(shape, std=self.prior_std)

    # -- reverse time ---------------------------------------------------------------------
    def reverse_drift(self, s: Tensor, x: Tensor, score: Tensor, probability_flow: bool) -> Tensor:
        """Noising-time rate of the reverse process, ``f x - c g^2 score`` (``c = 1/2``: the ODE).

        The reverse SDE (Anderson 1982; Song et al. 2021, eq. 6) and the probability-flow
        ODE (eq. 13) read ``dx = [f x - c g^2 score] ds`` integrated from ``s = 1`` down.
        """
        g2 = expand_t(self.diffusion(_as_time(s, x)) ** 2, x).to(x.dtype)
        return self.drift(s, x) - (0.5 if probability_flow else 1.0) * g2 * score


class BrownianNoising(NoisingSDE):
    """``dX = sigma dW`` used as a noising process: ``X_s | x0 ~ N(x0, sigma^2 s I)``.

    Its prior ``N(0, sigma^2 I)`` neglects the data's own spread (like VE's), so it is a
    good prior only when ``sigma`` is large against the data scale.
    """

    name = "brownian"

    def __init__(self, sigma: float = 1.0, s_min: float = 1e-3):
        super().__init__(s_min)
        self.sigma = float(sigma)
        self.prior_std = self.sigma

    def log_alpha(self, s):
        return torch.zeros_like(s)

    def d_log_alpha(self, s):
        return torch.zeros_like(s)

    def var(self, s):
        return self.sigma**2 * s

    def d_var(self, s):
        return torch.full_like(s, self.sigma**2)


def as_noising(sde: ReferenceSDE) -> NoisingSDE:
    """A reference SDE as a noising process (Brownian -> :class:`BrownianNoising`)."""
    return sde.as_noising()


def gaussian_marginal(sde: NoisingSDE, mean: Tensor, cov: Tensor,
                      s: Tensor | float) -> tuple[Tensor, Tensor]:
    """Closed form for Gaussian data ``N(mean, cov)`` (``(d,)``, ``(d, d)``): ``X_s ~
    N(alpha_s mean, alpha_s^2 cov + sigma_s^2 I)``; returns that mean and covariance."""
    s = torch.as_tensor(s, dtype=torch.float64)
    a, v = sde.log_alpha(s).exp().to(cov.dtype), sde.var(s).to(cov.dtype)
    return a * mean, a**2 * cov + v * torch.eye(cov.shape[0], dtype=cov.dtype)


def gaussian_score(sde: NoisingSDE, mean: Tensor, cov: Tensor):
    """The exact score ``score(x: (B, d), s: (B,)) = -C_s^{-1} (x - alpha_s mean)`` of the
    marginals for Gaussian data (``C_s = alpha_s^2 cov + sigma_s^2 I``): a test oracle."""

    lam, q = torch.linalg.eigh(cov)  # C_s = Q diag(alpha^2 lam + sigma^2) Q^T

    def score(x: Tensor, s: Tensor) -> Tensor:
        s = torch.as_tensor(s, dtype=torch.float64, device=x.device).expand(x.shape[0])
        a, v = sde.log_alpha(s).exp()[:, None], sde.var(s)[:, None]
        y = (x.to(q.dtype) - a * mean.to(q.dtype)) @ q
        return (-(y / (a**2 * lam + v)) @ q.T).to(x.dtype)

    return score
