"""Interpolants ``x_t = alpha(t) x0 + beta(t) x1 + gamma(t) z`` with their time derivatives.

Stochastic interpolants (Albergo & Vanden-Eijnden 2023; Albergo, Boffi & Vanden-Eijnden
2023, "Stochastic interpolants: a unifying framework", Sec. 3) and the paths of
(conditional) flow matching are the same object: a deterministic *path*
``I(t, x0, x1) = alpha(t) x0 + beta(t) x1`` with ``alpha(0) = beta(1) = 1``,
``alpha(1) = beta(0) = 0``, plus a *latent* term ``gamma(t) z``, ``z ~ N(0, I)``
independent of ``(x0, x1)``, with ``gamma(0) = gamma(1) = 0``.

Paths (``PATHS``):

* ``linear``: ``alpha = 1 - t``, ``beta = t`` (the straight path of rectified flow / CFM);
* ``trigonometric``: ``alpha = cos(pi t / 2)``, ``beta = sin(pi t / 2)``
  (variance preserving: ``alpha^2 + beta^2 = 1``);
* ``encoder_decoder``: ``alpha = cos^2(pi t) 1[t < 1/2]``, ``beta = cos^2(pi t) 1[t > 1/2]``:
  ``x0`` is encoded into pure noise at ``t = 1/2`` and decoded into ``x1`` (needs a
  ``gamma > 0`` at ``t = 1/2``, e.g. ``gamma = sin^2(pi t)``).

Latent scales (``GAMMAS``), ``a >= 0``:

* ``sqrt``: ``gamma = sqrt(a t (1 - t))`` (the Brownian bridge of ``dX = sqrt(a) dW``;
  CFM's ``sigma`` is ``sqrt(a)``); ``d_gamma = a (1 - 2t) / (2 gamma)`` is singular at
  the ends, ``gamma d_gamma = a (1 - 2t) / 2`` is not;
* ``sin2``: ``gamma = sqrt(a) sin^2(pi t)`` (the encoder-decoder's latent);
* ``constant``: ``gamma = sqrt(a)`` at every ``t``: not an interpolant (the ends are
  blurred by ``sqrt(a)``), but the Gaussian path of I-CFM / OT-CFM (Tong et al. 2024,
  ``x_t = mu_t + sigma z``, ``u_t = x1 - x0``), kept for their 2D protocol.

All functions take ``t`` of any shape and return tensors of the same shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sbrun.errors import ConfigError

PATHS = ("linear", "trigonometric", "encoder_decoder")
GAMMAS = ("sqrt", "sin2", "constant")


@dataclass
class Coefficients:
    """``alpha_t, beta_t, gamma_t`` and their time derivatives, each broadcastable to ``x``."""

    alpha_t: Tensor
    beta_t: Tensor
    gamma_t: Tensor
    d_alpha_t: Tensor
    d_beta_t: Tensor
    d_gamma_t: Tensor
    gamma_d_gamma_t: Tensor  # gamma * d_gamma, finite at the ends


class Path:
    """``I(t, x0, x1) = alpha(t) x0 + beta(t) x1``; subclasses define the four functions."""

    name = "path"

    def alpha(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def beta(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def d_alpha(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def d_beta(self, t: Tensor) -> Tensor:
        raise NotImplementedError


class Linear(Path):
    """``alpha = 1 - t``, ``beta = t``."""

    name = "linear"

    def alpha(self, t):
        return 1 - t

    def beta(self, t):
        return t

    def d_alpha(self, t):
        return -torch.ones_like(t)

    def d_beta(self, t):
        return torch.ones_like(t)


class Trigonometric(Path):
    """``alpha = cos(pi t / 2)``, ``beta = sin(pi t / 2)``."""

    name = "trigonometric"

    def alpha(self, t):
        return torch.cos(0.5 * math.pi * t)

    def beta(self, t):
        return torch.sin(0.5 * math.pi * t)

    def d_alpha(self, t):
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)

    def d_beta(self, t):
        return 0.5 * math.pi * torch.cos(0.5 * math.pi * t)


class EncoderDecoder(Path):
    """``alpha = cos^2(pi t) 1[t < 1/2]``, ``beta = cos^2(pi t) 1[t > 1/2]``."""

    name = "encoder_decoder"

    def alpha(self, t):
        return torch.where(t < 0.5, torch.cos(math.pi * t) ** 2, torch.zeros_like(t))

    def beta(self, t):
        return torch.where(t > 0.5, torch.cos(math.pi * t) ** 2, torch.zeros_like(t))

    def d_alpha(self, t):  # d/dt cos^2(pi t) = -pi sin(2 pi t)
        return torch.where(t < 0.5, -math.pi * torch.sin(2 * math.pi * t), torch.zeros_like(t))

    def d_beta(self, t):
        return torch.where(t > 0.5, -math.pi * torch.sin(2 * math.pi * t), torch.zeros_like(t))


class Gamma:
    """Latent scale ``gamma(t)`` (``gamma(0) = gamma(1) = 0`` except ``constant``); ``a = 0``
    switches it off."""

    name = "gamma"

    def __init__(self, a: float = 1.0):
        if not a >= 0:
            raise ConfigError(f"the latent scale a must be >= 0, got {a}")
        self.a = float(a)

    def gamma(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def d_gamma(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def gamma_d_gamma(self, t: Tensor) -> Tensor:
        return self.gamma(t) * self.d_gamma(t)


class SqrtGamma(Gamma):
    """``gamma = sqrt(a t (1 - t))``: a Brownian bridge of variance ``a`` per unit time."""

    name = "sqrt"

    def gamma(self, t):
        return (self.a * t * (1 - t)).clamp_min(0).sqrt()

    def d_gamma(self, t):
        """``a (1 - 2t) / (2 gamma)``; infinite at ``t = 0, 1`` (never divide by it there)."""
        if self.a == 0:
            return torch.zeros_like(t)
        return self.a * (1 - 2 * t) / (2 * self.gamma(t))

    def gamma_d_gamma(self, t):
        return 0.5 * self.a * (1 - 2 * t)


class Sin2Gamma(Gamma):
    """``gamma = sqrt(a) sin^2(pi t)``."""

    name = "sin2"

    def gamma(self, t):
        return math.sqrt(self.a) * torch.sin(math.pi * t) ** 2

    def d_gamma(self, t):
        return math.sqrt(self.a) * math.pi * torch.sin(2 * math.pi * t)


class ConstantGamma(Gamma):
    """``gamma = sqrt(a)``, ``d_gamma = 0`` (CFM's constant-width Gaussian path)."""

    name = "constant"

    def gamma(self, t):
        return torch.full_like(t, math.sqrt(self.a))

    def d_gamma(self, t):
        return torch.zeros_like(t)


_PATHS = {"linear": Linear, "trigonometric": Trigonometric, "encoder_decoder": EncoderDecoder}
_GAMMAS = {"sqrt": SqrtGamma, "sin2": Sin2Gamma, "constant": ConstantGamma}


@dataclass
class Interpolant:
    """``x_t = alpha(t) x0 + beta(t) x1 + gamma(t) z`` (``x0, x1, z: (B, *D)``, ``t: (B,)``)."""

    path: Path
    latent: Gamma

    @property
    def stochastic(self) -> bool:
        """Whether ``gamma`` is not identically 0 (a score exists)."""
        return self.latent.a > 0

    def coefficients(self, t: Tensor, like: Tensor | None = None) -> Coefficients:
        """Every coefficient at ``t: (B,)``, shaped ``(B, 1, ...)`` against ``like: (B, *D)``."""
        if like is not None:
            t = t.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))
        p, g = self.path, self.latent
        return Coefficients(p.alpha(t), p.beta(t), g.gamma(t), p.d_alpha(t), p.d_beta(t),
                            g.d_gamma(t), g.gamma_d_gamma(t))

    def sample(self, t: Tensor, x0: Tensor, x1: Tensor, z: Tensor | None = None) -> Tensor:
        """``x_t``; ``z = None`` gives the deterministic path ``I(t, x0, x1)``."""
        c = self.coefficients(t, x0)
        xt = c.alpha_t * x0 + c.beta_t * x1
        return xt if z is None else xt + c.gamma_t * z

    def sample_and_velocity(self, t: Tensor, x0: Tensor, x1: Tensor,
                            z: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(x_t, d/dt x_t)`` from one evaluation of the coefficients (as :meth:`sample`
        and :meth:`velocity` with ``gamma_min = 0``)."""
        c = self.coefficients(t, x0)
        xt, u = c.alpha_t * x0 + c.beta_t * x1, c.d_alpha_t * x0 + c.d_beta_t * x1
        if z is None:
            return xt, u
        return xt + c.gamma_t * z, (u + c.d_gamma_t * z if self.stochastic else u)

    def path_velocity(self, t: Tensor, x0: Tensor, x1: Tensor) -> Tensor:
        """``d/dt I = alpha' x0 + beta' x1`` (the conditional velocity without the latent)."""
        c = self.coefficients(t, x0)
        return c.d_alpha_t * x0 + c.d_beta_t * x1

    def velocity(self, t: Tensor, x0: Tensor, x1: Tensor, z: Tensor | None = None,
                 gamma_min: float = 0.0) -> Tensor:
        """``d/dt x_t = alpha' x0 + beta' x1 + gamma' z``.

        ``gamma_min > 0`` evaluates ``gamma'`` as ``gamma gamma' / max(gamma, gamma_min)``:
        finite for times drawn at the ends, where ``sqrt``'s ``gamma'`` is infinite.
        """
        u = self.path_velocity(t, x0, x1)
        if z is None or not self.stochastic:
            return u
        c = self.coefficients(t, x0)
        d_gamma = c.gamma_d_gamma_t / c.gamma_t.clamp_min(gamma_min) if gamma_min > 0 else c.d_gamma_t
        return u + d_gamma * z


def make_interpolant(path: str = "linear", gamma: str = "sqrt", a: float = 1.0) -> Interpolant:
    """``Interpolant`` by names: ``path`` in :data:`PATHS`, ``gamma`` in :data:`GAMMAS`."""
    if path not in _PATHS:
        raise ConfigError(f"unknown path '{path}'; valid: {', '.join(PATHS)}")
    if gamma not in _GAMMAS:
        raise ConfigError(f"unknown gamma '{gamma}'; valid: {', '.join(GAMMAS)}")
    if path == "encoder_decoder" and not a > 0:
        raise ConfigError("the encoder_decoder path needs a latent (a > 0): x_t = gamma z at t = 1/2")
    return Interpolant(_PATHS[path](), _GAMMAS[gamma](a))
