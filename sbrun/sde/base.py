"""Base class of reference processes ``dX = f(t, X) dt + g(t) dW`` on ``t in [0, 1]``."""

from __future__ import annotations

import torch
from torch import Tensor

from sbrun.data.gaussians import Gaussian


def expand_t(t: Tensor | float, x: Tensor) -> Tensor:
    """Broadcast a time ``t: (B,)`` (or a scalar) against ``x: (B, *D)`` -> ``(B, 1, ..)``."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    return t.reshape(-1, *([1] * (x.ndim - 1)))


class ReferenceSDE:
    """Interface of a reference process (see ``sbrun.sde`` for the time convention).

    Subclasses implement ``drift``, ``diffusion`` and, where closed-form,
    ``marginal``, ``bridge`` and ``bridge_drift``.
    """

    name = "sde"
    # The diffusivity of a Brownian reference ``dX = sigma dW`` (``eps = sigma^2``), the one
    # sigma every bridge method reads; ``None`` for references that are not Brownian.
    sigma: float | None = None

    def drift(self, t: Tensor, x: Tensor) -> Tensor:
        """``f(t, x)``; ``t: (B,)``, ``x: (B, *D)`` -> ``(B, *D)``."""
        raise NotImplementedError

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t)``; ``t: (B,)`` -> ``(B,)``."""
        raise NotImplementedError

    def marginal(self, t: Tensor, x0: Tensor) -> Gaussian:
        """Law of ``X_t`` given ``X_0 = x0``: one isotropic :class:`Gaussian` per row."""
        raise NotImplementedError(f"{self.name} has no closed-form marginal")

    def bridge(self, t: Tensor, x0: Tensor, x1: Tensor) -> Gaussian:
        """Law of ``X_t`` given ``X_0 = x0`` and ``X_1 = x1`` (one :class:`Gaussian` per row)."""
        raise NotImplementedError(f"{self.name} has no closed-form bridge")

    def bridge_drift(self, t: Tensor, x: Tensor, x1: Tensor) -> Tensor:
        """Drift of the reference conditioned to end at ``x1`` (Doob h-transform)."""
        raise NotImplementedError(f"{self.name} has no closed-form bridge drift")

    def transition(self, r0: Tensor, r1: Tensor) -> tuple[Tensor, Tensor]:
        """Exact Gaussian kernel of the reference in its *run time* ``r`` (``r = 0`` at the
        end it starts from, whichever that is): ``X_{r1} | X_{r0} = x ~ N(scale x, std^2 I)``
        for ``r0 <= r1`` in ``[0, 1]`` (``(n,)`` float64 each) -> ``(scale, std)``, ``(n,)``
        float64. One interface for every linear reference (Brownian, VP, sub-VP, VE), so
        chain-based methods (DSB) never branch on the reference's type."""
        raise NotImplementedError(f"{self.name} has no closed-form transition kernel")

    def as_noising(self):
        """This reference as a noising SDE with Gaussian marginals (diffusion models)."""
        from sbrun.errors import ConfigError

        raise ConfigError(f"sde={self.name} is not a noising SDE with Gaussian marginals: use "
                          "sde=vp, subvp, ve or brownian")

    def prior(self, n: int, shape: tuple[int, ...], generator=None) -> Tensor:
        """Samples of the prior (the source of a generative problem): ``N(0, I)``."""
        return torch.randn((n, *shape), generator=generator)

    def prior_distribution(self, shape: tuple[int, ...]):
        """The prior as a :class:`~sbrun.data.distributions.Distribution`: ``N(0, I)``."""
        from sbrun.data.distributions import StandardGaussian

        return StandardGaussian(shape)
