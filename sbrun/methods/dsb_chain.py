"""DSB's discrete chain: step sizes, the reference's kernels, and the trajectory cache.

Everything is indexed in sbrun's order: states ``x_0 .. x_N`` sit at times
``t_k = (gamma_1 + ... + gamma_k) / T`` (``T = method.horizon``; ``t_0 = 0`` the source,
``t_N = 1`` the target); step ``k`` joins ``t_k`` and ``t_{k+1}``, has length ``h_k = gamma_{k+1} / T``
and Gaussian noise of std ``std_k``, taken from the reference process. A chain that
moves *forward* draws ``x_{k+1} = mean_k(x_k) + std_k z``; one that moves *backward*
draws ``x_k = mean_k(x_{k+1}) + std_k z`` (De Bortoli et al. 2021, Alg. 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from sbrun.errors import ConfigError
from sbrun.sde.base import ReferenceSDE, expand_t

SCHEDULES = ("constant", "symmetric")
SPACINGS = ("linear", "geometric")
MeanFn = Callable[[Tensor, Tensor], Tensor]  # mean_fn(k: (B,) long, x: (B, *D)) -> (B, *D)


def gamma_schedule(num_steps: int, horizon: float = 1.0, schedule: str = "constant",
                   gamma_ratio: float = 10.0, spacing: str = "linear") -> Tensor:
    """DSB's step sizes ``gamma_1 .. gamma_N`` (float64, ``(N,)``), summing to ``horizon``.

    ``constant``: all equal to ``horizon / N``. ``symmetric``: the paper's schedule, increasing
    from ``gamma_min`` to ``gamma_max = gamma_ratio * gamma_min`` over the first half
    (``linear`` or ``geometric`` spacing) and mirrored over the second (an odd ``N`` puts
    one ``gamma_max`` in the middle), then scaled so that the sum is ``horizon``.
    """
    if num_steps < 1:
        raise ConfigError(f"method.num_steps must be >= 1, got {num_steps}")
    if not horizon > 0:
        raise ConfigError(f"method.horizon must be > 0, got {horizon}")
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown method.schedule '{schedule}'; valid: {', '.join(SCHEDULES)}")
    if spacing not in SPACINGS:
        raise ConfigError(f"unknown method.spacing '{spacing}'; valid: {', '.join(SPACINGS)}")
    if not gamma_ratio >= 1:
        raise ConfigError(f"method.gamma_ratio must be >= 1, got {gamma_ratio}")
    if schedule == "constant" or num_steps < 2:
        return torch.full((num_steps,), horizon / num_steps, dtype=torch.float64)
    n = num_steps // 2
    if spacing == "linear":
        half = torch.linspace(1.0, gamma_ratio, n, dtype=torch.float64)
    else:
        half = torch.logspace(0.0, math.log10(gamma_ratio), n, dtype=torch.float64)
    middle = half.new_full((num_steps % 2,), float(gamma_ratio))
    gammas = torch.cat([half, middle, half.flip(0)])
    return gammas * (horizon / gammas.sum())


class ReferenceChain:
    """The reference process discretised on DSB's grid, run away from its start.

    The reference starts at one end (``start="source"``: ``t = 0``, moving forward;
    ``"target"``: ``t = 1``, moving backward) and runs in its own time ``r``: ``r = t``
    or ``r = 1 - t``, and steps by its exact linear kernel ``sde.transition(r, r')``:
    ``x' = scale x + std z`` (Brownian ``dX = sigma dW``: ``scale = 1``, ``std = sigma
    sqrt(dr)``; a noising SDE, VP, VE, ..., with data at ``r = 0``: ``alpha_s' / alpha_s``
    and ``sqrt(var_s' - scale^2 var_s)`` at ``s = s_min + (1 - s_min) r``).

    Attributes:
        t: ``(N+1,)`` float64 grid; ``h``: ``(N,)`` step lengths; ``std``: ``(N,)``
        float64 noise std of each step (used by every chain on this grid).
    """

    def __init__(self, sde: ReferenceSDE, gammas: Tensor, start: str = "source",
                 drift: Tensor | None = None):
        if start not in ("source", "target"):
            raise ConfigError(f"reference start must be 'source' or 'target', got {start}")
        self.sde, self.start = sde, start
        gammas = gammas.to(torch.float64)
        self.t = torch.cat([gammas.new_zeros(1), gammas.cumsum(0) / gammas.sum()])
        self.t[-1] = 1.0
        self.h = torch.diff(self.t)
        # the reference's own time at the state it leaves (a) and reaches (b) on each step
        r = self.t if start == "source" else 1.0 - self.t
        ra, rb = (r[:-1], r[1:]) if start == "source" else (r[1:], r[:-1])
        scale, std = sde.transition(ra, rb)
        self._scale, self.std = scale.to(torch.float64), std.to(torch.float64)
        if not bool((self.std > 0).all()):
            raise ConfigError("the reference adds no noise on some DSB step: DSB needs a "
                              "non-degenerate reference (sde.sigma > 0, beta_max > beta_min)")
        if drift is not None and not torch.allclose(self._scale, torch.ones_like(self._scale)):
            raise ConfigError("a constant reference drift needs a Brownian reference (sde=brownian)")
        # ``drift``: a constant velocity ``a`` (shape of one sample, source -> target in sbrun
        # time): ``dX = a dt + sigma dW``, whose bridges are the Brownian ones
        self.drift = None if drift is None else drift.to(torch.float64)

    @property
    def num_steps(self) -> int:
        return self.h.shape[0]

    @property
    def direction(self) -> str:
        """The way the reference runs: ``forward`` from the source, ``backward`` from the target."""
        return "forward" if self.start == "source" else "backward"

    def mean(self, k: Tensor, x: Tensor) -> Tensor:
        """Mean of the reference's next state on step ``k: (B,)`` from ``x: (B, *D)``."""
        out = expand_t(self._scale.to(x.device)[k], x).to(x.dtype) * x
        if self.drift is None:
            return out
        sign = 1.0 if self.start == "source" else -1.0  # a backward chain travels -a
        h = expand_t(self.h.to(x.device)[k], x).to(x.dtype)
        return out + sign * h * self.drift.to(x.device, x.dtype)


def run_chain(mean_fn: MeanFn, x: Tensor, std: Tensor, direction: str,
              generator: torch.Generator | None = None, keep: int | None = None,
              noise_last_step: bool = True, record: Tensor | None = None,
              record_means: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Simulate the chain from ``x: (B, *D)`` (the source for ``forward``, else the target).

    ``mean_fn(k, x)`` is the mean of step ``k``; ``std: (N,)`` its noise. Noise is drawn
    on the generator's device and moved to ``x``'s. ``noise_last_step=False`` returns the
    mean of the last step (the reference implementation's sampler). ``record``: an
    ``(B, N+1, *D)`` buffer filled with every state in time order (the cache), and
    ``record_means`` an ``(B, N, *D)`` one with the mean of every step. Returns
    ``(x_end, path)``, ``path: (keep, N+1, *D)`` in the order visited (or ``None``).
    """
    n = std.shape[0]
    order = range(n) if direction == "forward" else range(n - 1, -1, -1)
    path = [x[:keep]] if keep else None
    if record is not None:
        record[:, 0 if direction == "forward" else n] = x
    gen_device = generator.device if generator is not None else torch.device("cpu")
    for i, k in enumerate(order):
        kk = torch.full((x.shape[0],), k, dtype=torch.long, device=x.device)
        x = mean_fn(kk, x)
        if record_means is not None:
            record_means[:, k] = x
        if noise_last_step or i < n - 1:
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=gen_device)
            x = x + float(std[k]) * z.to(x.device)
        if record is not None:
            record[:, k + 1 if direction == "forward" else k] = x
        if path is not None:
            path.append(x[:keep])
    return x, (torch.stack(path, 1) if path is not None else None)


class TrajectoryCache:
    """Full trajectories ``(M, N+1, *D)`` of one chain and the mean of each of its steps
    ``(M, N, *D)``, refilled from time to time.

    DSB's replay cache (the reference implementation's ``CacheLoader``): training pairs
    ``(x_k, x_{k+1})`` are drawn from stored trajectories instead of simulating a chain
    per gradient step. The stored step means are half of each mean-matching target, so
    a training step evaluates the frozen network once, not twice. Memory:
    ``M (2N+1) prod(D)`` floats (4 bytes each in float32).
    """

    def __init__(self) -> None:
        self.states: Tensor | None = None
        self.means: Tensor | None = None

    def fill(self, mean_fn: MeanFn, x: Tensor, std: Tensor, direction: str,
             generator: torch.Generator | None) -> None:
        """Simulate ``mean_fn``'s chain from ``x: (M, *D)`` and keep every state."""
        n = std.shape[0]
        self.states = x.new_empty((x.shape[0], n + 1, *x.shape[1:]))
        self.means = x.new_empty((x.shape[0], n, *x.shape[1:]))
        with torch.no_grad():
            run_chain(mean_fn, x, std, direction, generator, record=self.states,
                      record_means=self.means)

    def sample(self, n: int, generator: torch.Generator | None
               ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``n`` uniform draws of ``(x_k, x_{k+1}, k, mean_k)`` (trajectory and step
        uniform); ``mean_k`` is the mean the chain drew the second point of the step from."""
        assert self.states is not None, "fill the cache first"
        m, steps = self.states.shape[0], self.states.shape[1] - 1
        i = torch.randint(0, m, (n,), generator=generator).to(self.states.device)
        k = torch.randint(0, steps, (n,), generator=generator).to(self.states.device)
        return self.states[i, k], self.states[i, k + 1], k, self.means[i, k]
