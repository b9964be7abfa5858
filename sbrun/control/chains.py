"""Base processes of the control problem as Gaussian Markov chains on a grid ``t_0 < .. < t_N``.

A chain step and its controlled version (``u_k = u(t_k, X_k)``)::

    X_{k+1} = m_k(X_k) + s_k eps_k                              (base)
    X_{k+1} = m_k(X_k) + s_k (eps_k + sqrt(h_k) u_k)            (controlled)

i.e. the Euler–Maruyama step of ``dX = (f_base + g u) dt + g dW`` with ``g_k = s_k /
sqrt(h_k)``. Each step's KL to the base step is ``h_k |u_k|^2 / 2`` exactly, so the
discrete running cost is ``sum_k h_k |u_k|^2 / 2``.

* :class:`BrownianChain` -- the reference ``dX = sigma dW`` started at the origin (a
  point mass: memoryless, ``X_1 ~ N(0, sigma^2 I)``).
* :class:`MemorylessFlowChain` -- a linear-path flow-matching model ``v(t, x)``
  (``x_t = t x1 + (1 - t) x0``, ``x0 ~ N(0, I)`` independent of the data) run as the
  *memoryless* SDE of Adjoint Matching (Domingo-Enrich et al. 2024, Sec. 4; their
  ``sigma(t) = sqrt(2 eta_t)``, ``eta_t = alpha_t (beta_dot_t alpha_t / beta_t - alpha_dot_t)``
  with ``alpha_t = 1 - t``, ``beta_t = t``)::

      dX = (2 v(t, X) - X / t) dt + sqrt(2 (1 - t) / t) dW,

  which has the flow's marginals and ``X_0`` independent of ``X_1`` -- the condition
  for the fine-tuned law to be exactly ``p_base exp(R / lambda) / Z``. Its drift and
  noise blow up at ``t = 0``, so the chain does not take Euler steps of it but the
  exact Gaussian steps of the same process given ``x1`` (the DDPM posterior of the
  noising chain ``x_t = t x1 + (1 - t) z``), with ``x1`` replaced by the flow's
  prediction ``x1_hat = x + (1 - t) v(t, x)``: for ``t < t'``, ``r = t / t'``,
  ``q = (1 - t)^2 - r^2 (1 - t')^2``::

      m(x) = q / (1 - t)^2 * t' x1_hat + (1 - t')^2 r / (1 - t)^2 * x,
      s    = (1 - t') sqrt(q) / (1 - t).

  The first step (``t = 0``, ``r = 0``) forgets ``X_0`` exactly; as ``h -> 0`` the
  chain is the SDE above (``s^2 / h -> 2 (1 - t) / t``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sbrun.data.distributions import Distribution, StandardGaussian
from sbrun.errors import ConfigError
from sbrun.sde.brownian import Brownian
from sbrun.sde.ve import VE


class PointMass(Distribution):
    """All mass at ``point`` (the origin by default): the start of a memoryless reference."""

    def __init__(self, shape: tuple[int, ...], point: float = 0.0):
        self.shape, self.point, self.name = tuple(shape), float(point), "origin"

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.full((n, *self.shape), self.point)


class Chain:
    """A base chain on ``steps`` uniform steps of ``[0, 1]``; subclasses give ``mean``/``std``."""

    name = "chain"
    identity_mean = False  # m_k(x) = x: the lean adjoint is constant in k

    def __init__(self, shape: tuple[int, ...], steps: int):
        self.shape, self.steps = tuple(shape), int(steps)
        self.times = torch.linspace(0.0, 1.0, self.steps + 1, dtype=torch.float64)

    prior: Distribution

    def h(self, k: int) -> float:
        return float(self.times[k + 1] - self.times[k])

    def mean(self, k: int, x: Tensor) -> Tensor:
        """``m_k(x)``: ``(B, *D)`` -> ``(B, *D)``, differentiable in ``x``."""
        raise NotImplementedError

    def std(self, k: int) -> float:
        """``s_k``, the noise of step ``k``."""
        raise NotImplementedError

    def g(self, k: int) -> float:
        """``g(t_k) = s_k / sqrt(h_k)``: how the control enters the drift."""
        return self.std(k) / math.sqrt(self.h(k))

    def t(self, k: int, x: Tensor) -> Tensor:
        """Time ``t_k`` as a ``(B,)`` tensor for networks."""
        return torch.full((x.shape[0],), float(self.times[k]), dtype=x.dtype, device=x.device)

    def terminal(self) -> Distribution | None:
        """The exact base law at ``t = 1`` when known (else ``None``)."""
        return None


class BrownianChain(Chain):
    """``dX = g(t) dW`` from the origin, ``V(t) = int_0^t g^2``: ``m_k(x) = x``, ``s_k^2 = V(t_{k+1})
    - V(t_k)`` (exact steps), ``X_1 ~ N(0, V(1) I)``. ``variance=None``: constant ``g = sigma``
    (``V = sigma^2 t``); otherwise ``variance(t: float64 (N+1,)) -> V(t)`` with ``V(0) = 0``."""

    name = "brownian"
    identity_mean = True

    def __init__(self, shape: tuple[int, ...], steps: int, sigma: float = 1.0, variance=None):
        super().__init__(shape, steps)
        self.sigma = float(sigma)
        v = self.sigma**2 * self.times if variance is None else variance(self.times)
        self._std = (v[1:] - v[:-1]).clamp_min(0.0).sqrt()
        self._var, self.total_var = v, float(v[-1] - v[0])
        self.prior = PointMass(self.shape)

    def mean(self, k: int, x: Tensor) -> Tensor:
        return x

    def std(self, k: int) -> float:
        return float(self._std[k])

    def terminal(self) -> Distribution:
        return StandardGaussian(self.shape, std=math.sqrt(self.total_var))

    def bridge(self, k: Tensor, x1: Tensor, eps: Tensor) -> Tensor:
        """Draws of ``X_{t_k} | X_0 = 0, X_1 = x1`` (the base bridge, Gaussian): ``N(r x1, r (1 - r)
        V(1) I)``, ``r = V(t_k) / V(1)``; ``k: (B,)`` step indices, ``x1, eps: (B, *D)``."""
        r = (self._var[k.cpu()] / self._var[-1]).reshape(-1, *([1] * (x1.dim() - 1)))
        r = r.to(device=x1.device, dtype=x1.dtype)
        return r * x1 + (r * (1 - r) * self.total_var).clamp_min(0.0).sqrt() * eps


class MemorylessFlowChain(Chain):
    """The memoryless chain of a linear-path flow model ``velocity(x, t)`` (module docstring)."""

    name = "memoryless-flow"

    def __init__(self, shape: tuple[int, ...], steps: int, velocity: nn.Module):
        super().__init__(shape, steps)
        self.velocity = velocity
        self.prior = StandardGaussian(self.shape)

    def _coefficients(self, k: int) -> tuple[float, float, float]:
        """``(a, b, s)`` with ``m(x) = a x1_hat + b x`` and noise ``s``."""
        t, t1 = float(self.times[k]), float(self.times[k + 1])
        r = t / t1
        s0, s1 = 1.0 - t, 1.0 - t1
        q = s0**2 - (r * s1) ** 2
        return q / s0**2 * t1, s1**2 * r / s0**2, s1 * math.sqrt(max(q, 0.0)) / s0

    def x1_hat(self, k: int, x: Tensor) -> Tensor:
        """``E[X_1 | X_t = x] = x + (1 - t) v(t, x)`` of the flow."""
        t = float(self.times[k])
        return x + (1.0 - t) * self.velocity(x, self.t(k, x))

    def mean(self, k: int, x: Tensor) -> Tensor:
        a, b, _ = self._coefficients(k)
        return a * self.x1_hat(k, x) + b * x

    def std(self, k: int) -> float:
        return self._coefficients(k)[2]


class DiffusionChain(Chain):
    """The generative chain of a trained diffusion model (ddpm / score-sde) as the base.

    ``kernel(t, t_next, x) -> Gaussian`` is the run's own reverse step between sbrun times
    (``ScoreSDE.kernel``: the posterior ``q(x_r | x_s, x0 = x0_hat(x_s))`` of its noising SDE;
    ``DDPM.kernel``: Ho et al.'s ``p_theta(x_{i-1} | x_i)`` on the chain it was trained on),
    started from the run's prior at ``t = 0``. Its ``h -> 0`` limit is the reverse-time SDE
    with the diffusion's own noise ``g(s) sqrt(|ds/dt|)`` -- memoryless up to the noising
    process's memory of its start: ``X_1`` and ``X_0`` are correlated by ``alpha_1``
    (VP: ``exp(-(beta_min + beta_max) / 4)``, 0.007 at the defaults) or ``data std /
    sigma_max`` (VE), so the tilt ``p_base exp(R / lambda)`` is exact up to that. The step
    std does not depend on ``x`` (a table, filled by one call per step on the first use).
    """

    name = "diffusion"

    def __init__(self, shape: tuple[int, ...], steps: int, kernel, prior: Distribution,
                 net: nn.Module | None = None):
        super().__init__(shape, steps)
        self.kernel, self.prior, self.net = kernel, prior, net  # net: where the kernel runs
        self._stds: list[float] | None = None

    def _step(self, k: int, x: Tensor):
        t = torch.full((x.shape[0],), float(self.times[k]), dtype=torch.float64, device=x.device)
        return self.kernel(t, t + self.h(k), x)

    def mean(self, k: int, x: Tensor) -> Tensor:
        return self._step(k, x).mean.to(x.dtype)

    def std(self, k: int) -> float:
        if self._stds is None:
            with torch.no_grad():
                x = torch.zeros((1, *self.shape), device=self._device())
                self._stds = [float(self._step(i, x).std.max()) for i in range(self.steps)]
        return self._stds[k]

    def _device(self) -> torch.device:
        p = next(self.net.parameters(), None) if self.net is not None else None
        return p.device if p is not None else torch.device("cpu")


def reference_chain(sde, shape: tuple[int, ...], steps: int) -> BrownianChain:
    """The reference ``sde`` run from the origin as a :class:`BrownianChain` (memoryless).

    * ``sde=brownian``: ``dX = sigma dW``, ``V(t) = sigma^2 t``.
    * ``sde=ve``: the VE noise in its generative direction (Adjoint Sampling's geometric
      schedule, Havens et al. 2025): ``g(t)^2 = (1 - s_min) d var/ds`` at ``s = 1 - (1 -
      s_min) t``, i.e. ``V(t) = var(1) - var(s(t))``: large increments early (``X_1 ~ N(0,
      (sigma_max^2 - ..) I)`` covers the target), increments ``~ sigma_min`` at ``t = 1`` (a
      fine last step, which a constant sigma on a uniform grid cannot give).
    """
    if isinstance(sde, Brownian):
        return BrownianChain(shape, steps, sde.sigma)
    if isinstance(sde, VE):
        top = sde.var(torch.tensor(1.0, dtype=torch.float64))
        return BrownianChain(shape, steps, sde.sigma_max,
                             variance=lambda t: top - sde.var(sde.to_noising_time(t)))
    raise ConfigError(f"method=control on the reference needs sde=brownian or sde=ve (dX = g(t) dW "
                      f"from the origin), got sde={sde.name}")
