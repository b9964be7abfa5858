"""The exact laws a control run is scored against.

* :func:`tilted_gaussian` -- ``N(m, S)`` tilted by ``exp(-|x - c|^2 / (2 lambda))`` is
  ``N(m*, S*)``, ``S*^{-1} = S^{-1} + I / lambda``, ``m* = S* (S^{-1} m + c / lambda)``.
* :class:`Tilted` -- ``p(x) exp(w(x)) / Z`` for any ``p`` that can be sampled, by
  importance resampling: a pool of ``pool`` draws of ``p`` per requested draw, weights
  ``softmax(w)``, multinomial resampling. ``ess`` reports the pool's effective sample
  size fraction (``1 / (n sum w_i^2)``), which says how much the resampling duplicates.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sbrun.data.distributions import Distribution
from sbrun.data.gaussians import Gaussian


def tilted_gaussian(mean: Tensor, cov: Tensor, center: Tensor, lam: float,
                    name: str = "tilted gaussian") -> Gaussian:
    """The closed form of ``N(mean, cov) exp(-|x - center|^2 / (2 lam)) / Z``."""
    mean, cov, center = (torch.as_tensor(v, dtype=torch.float64) for v in (mean, cov, center))
    eye = torch.eye(cov.shape[0], dtype=torch.float64)
    prec = torch.linalg.inv(cov) + eye / lam
    cov_t = torch.linalg.inv(prec)
    cov_t = 0.5 * (cov_t + cov_t.T)
    mean_t = cov_t @ (torch.linalg.solve(cov, mean) + center / lam)
    return Gaussian(mean_t, cov_t, name=name)


class Tilted(Distribution):
    """``base(x) exp(log_weight(x)) / Z`` by importance resampling (module docstring).

    ``log_weight(x: (B, *D)) -> (B,)``; evaluated in chunks of ``chunk`` rows.
    """

    def __init__(self, base: Distribution, log_weight, pool: int = 30, name: str = "tilted",
                 chunk: int = 4096):
        self.base, self.log_weight, self.pool, self.chunk = base, log_weight, int(pool), chunk
        self.shape, self.name = tuple(base.shape), name
        self.ess: float | None = None

    @torch.no_grad()
    def _resample(self, draws: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
        logw = torch.cat([self.log_weight(c).double().cpu() for c in draws.split(self.chunk)])
        w = torch.softmax(logw, 0)
        self.ess = float(1.0 / (len(w) * w.pow(2).sum()))
        idx = torch.multinomial(w, n, replacement=True, generator=generator)
        return draws[idx]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self._resample(self.base.sample(self.pool * n, generator), n, generator)

    def heldout(self, n: int, seed: int = 0) -> Tensor:
        g = torch.Generator().manual_seed(20_011 + 7919 * seed)
        return self._resample(self.base.heldout(self.pool * n, seed), n, g)
