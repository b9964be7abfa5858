"""Diffusion Schrödinger Bridge Matching (Shi, De Bortoli, Campbell, Doucet, NeurIPS 2023).

Iterative Markovian fitting (IMF) by bridge matching. A coupling ``Pi`` of (source,
target) pairs is joined by Brownian bridges of the reference ``dX = sigma dW``
(``sde.sigma``, ``eps = sigma^2``); the Markovian projection of that mixture of bridges is
the SDE whose drift regresses the bridge's drift (Shi et al. 2023, Prop. 2; Eq. 8)::

    forward:  F = argmin E |F(X_t, t) - (X_1 - X_t) / (1 - t)|^2,   X_t ~ bridge(X_0, X_1),
    backward: B = argmin E |B(X_t, t) - (X_0 - X_t) / t|^2,

(``sde.bridge_drift``, forward in ``t`` and in reversed time ``1 - t``), each term weighted
by ``1 - t`` (forward) or ``t`` (backward): the target's variance grows like ``1 / (1 - t)``
and a positive weight leaves the minimiser unchanged. IMF alternates the two: ``F`` is fitted
on pairs the (EMA) backward SDE ``dY = B dt + sigma dW`` produced from target draws,
then ``B`` on pairs the forward SDE produced from source draws; each projection keeps the
coupling's marginals and the fixed point is the Schrödinger bridge.

The first coupling (``first_coupling``): ``independent`` (DSBM-IMF, ``F`` first) or
``reference`` (DSBM-IPF: ``(x0, x0 + sigma Z)``, ``B`` first, which makes the first
iteration an IPF step). Pairs of later phases come from a cache of ``cache_size``
simulated pairs (``num_steps`` Euler–Maruyama steps), refilled every ``cache_refresh`` loss
calls, seeded so that a resumed run rebuilds it exactly. Networks: any time-conditioned
model (``model=mlp`` on points, ``model=unet`` on images) through the same code.

Sampling (``method.sampler``): ``sde`` (default) ``dX = F dt + sigma dW`` with the run's
stochastic solver (a stochastic coupling); ``ode``: the probability-flow ODE of the learned
bridge, drift ``(F - B) / 2`` (Nelson: ``F + B = sigma^2 grad log p_t``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sbrun.errors import ConfigError
from sbrun.methods.base import Batch, LossOutput, Method, Phase
from sbrun.methods.lightsb import brownian_eps, check_options
from sbrun.solvers import Solver, SolveResult, get_solver, time_grid

NET = {"forward": "F", "backward": "B"}
COUPLINGS = ("independent", "reference")
SAMPLERS = ("sde", "ode")
PREDICTS = ("drift", "endpoint")


class DSBM(Method):
    """DSBM: IMF by bridge matching, a forward net ``F`` and a backward net ``B``.

    Args:
        imf_iters: IMF iterations; each is two phases of ``trainer.steps`` steps.
        first_coupling: ``independent`` (DSBM-IMF) | ``reference`` (DSBM-IPF).
        num_steps: Euler–Maruyama steps that simulate the cached pairs.
        cache_size: simulated pairs held (memory: ``2 cache_size dim`` floats).
        cache_refresh: loss calls between refills of the cache.
        t_min: times are drawn uniformly in ``[t_min, 1 - t_min]``.
        sampler: ``sde`` | ``ode`` (module docstring).
        predict: ``drift`` (the net is the drift, loss above) | ``endpoint`` (the net
            predicts the bridge's end ``x1`` (forward) or ``x0`` (backward), unweighted
            squared error; the drift is the bridge's drift towards the prediction,
            ``(x1_hat - x) / (1 - t)``: the same minimiser, a target of bounded variance).
    """

    name = "dsbm"
    networks = ("F", "B")
    directions = ("forward", "backward")
    stochastic = True
    uses_reference = True

    def __init__(self, imf_iters: int = 10, first_coupling: str = "independent",
                 num_steps: int = 50, cache_size: int = 10000, cache_refresh: int = 1000,
                 t_min: float = 1e-3, sampler: str = "sde", predict: str = "drift"):
        check_options(first_coupling=(first_coupling, COUPLINGS), sampler=(sampler, SAMPLERS),
                      predict=(predict, PREDICTS))
        for key, value in (("imf_iters", imf_iters), ("num_steps", num_steps),
                           ("cache_size", cache_size), ("cache_refresh", cache_refresh)):
            if value < 1:
                raise ConfigError(f"method.{key} must be >= 1, got {value}")
        if predict == "endpoint" and sampler == "ode":  # (F - B)/2 divides by t and 1 - t
            raise ConfigError("method.predict=endpoint needs method.sampler=sde: the probability-"
                              "flow drift of endpoint nets is singular at t = 0 and t = 1")
        if not 0 <= t_min < 0.5:
            raise ConfigError(f"method.t_min must be in [0, 0.5), got {t_min}")
        self.imf_iters, self.first_coupling = int(imf_iters), first_coupling
        self.num_steps, self.cache_size = int(num_steps), int(cache_size)
        self.cache_refresh, self.t_min, self.sampler = int(cache_refresh), float(t_min), sampler
        self.predict = predict
        self.cache: tuple[Tensor, Tensor] | None = None
        self._train: str | None = None
        self._iter: int | None = None

    def bind(self, problem, sde) -> None:
        super().bind(problem, sde)
        brownian_eps(sde, self.name)

    def bridge_sigma(self) -> float:
        return self.sde.sigma

    @property
    def samples_sde(self) -> bool:
        return self.sampler == "sde"

    def phases(self, steps: int) -> list[Phase]:
        """Per IMF iteration: the first net (``F`` for an independent first coupling, ``B``
        for the reference's), then the other; evaluated after the pair."""
        order = ("forward", "backward") if self.first_coupling == "independent" \
            else ("backward", "forward")
        out = []
        for n in range(1, self.imf_iters + 1):
            for j, d in enumerate(order):
                out.append(Phase(f"imf{n}-{d}", steps, trainable=(NET[d],), index=len(out),
                                 step_label=n, evaluate=j == 1))
        return out

    # -- pairs ---------------------------------------------------------------------------
    def begin_phase(self, phase: Phase, nets: nn.ModuleDict, ctx: dict) -> None:
        """Freeze the other (EMA) net; pairs of the first phase come from the first coupling."""
        self._ctx, self._nets = ctx, nets
        self._train = "forward" if phase.trainable == ("F",) else "backward"
        self._iter = phase.step_label
        self._initial = phase.index == 0
        self._calls = int(ctx.get("phase_step", 0))
        self._seed = int(ctx["generator"].initial_seed()) * 1_000_003 + phase.index
        self.cache = None

    @torch.no_grad()
    def simulate(self, nets: nn.ModuleDict, x: Tensor, direction: str,
                 generator: torch.Generator | None = None) -> Tensor:
        """End points of ``num_steps`` Euler–Maruyama steps of the learned SDE from ``x``."""
        net = nets[NET[direction]]
        net.eval()
        res = get_solver("euler_maruyama")(self._sde_drift(net, direction), x,
                                           time_grid(self.num_steps).to(x.device),
                                           diffusion=self._noise(), generator=generator)
        return res.x

    def _refill(self, device: torch.device) -> None:
        refill = self._calls // self.cache_refresh
        seed = (self._seed * 1_000_003 + refill) % (2**63)
        g = torch.Generator().manual_seed(seed)
        data = self._ctx["data"]
        sim = "backward" if self._train == "forward" else "forward"
        start = (data.source if sim == "forward" else data.target).sample(self.cache_size, g)
        end = self.simulate(self._nets, start.to(device), sim, g)
        self.cache = (start.to(device), end) if sim == "forward" else (end, start.to(device))

    def pairs(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """``(x0, x1)`` of the current coupling, ``(B, *D)`` each."""
        if self._initial:
            if self.first_coupling == "independent":
                return batch.x0, batch.x1
            return batch.x0, batch.x0 + self.sde.sigma * batch.randn_like(batch.x0)
        if self.cache is None or self._calls % self.cache_refresh == 0:
            self._refill(batch.x1.device)
        idx = torch.randint(0, self.cache[0].shape[0], (batch.x1.shape[0],),
                            generator=batch.generator).to(batch.x1.device)
        return self.cache[0][idx], self.cache[1][idx]

    # -- bridge matching -------------------------------------------------------------------
    def bridge_target(self, t: Tensor, x_t: Tensor, x0: Tensor, x1: Tensor,
                      direction: str) -> Tensor:
        """The drift a net regresses at ``x_t``: the Brownian bridge's drift towards ``x1``
        (forward) or, in reversed time ``1 - t``, towards ``x0`` (backward)."""
        if direction == "forward":
            return self.sde.bridge_drift(t, x_t, x1)
        return self.sde.bridge_drift(1 - t, x_t, x0)

    def loss(self, nets: nn.ModuleDict, batch: Batch, phase: Phase) -> LossOutput:
        if self._train is None:
            raise RuntimeError("DSBM.loss called before begin_phase")
        x0, x1 = self.pairs(batch)
        self._calls += 1
        t = self.t_min + (1 - 2 * self.t_min) * batch.rand(x0.shape[0])
        x_t = self.sde.bridge(t, x0, x1).sample(generator=batch.generator)
        if self.predict == "endpoint":
            target, weight = (x1 if self._train == "forward" else x0), torch.ones_like(t)
        else:
            target = self.bridge_target(t, x_t, x0, x1, self._train)
            weight = (1 - t) if self._train == "forward" else t
        err = (nets[NET[self._train]](x_t, t) - target).reshape(x0.shape[0], -1).pow(2).sum(1)
        loss = (weight * err).mean()
        return LossOutput(loss, {"loss": loss.detach()})

    # -- sampling --------------------------------------------------------------------------
    def _net_drift(self, net: nn.Module, x: Tensor, t, direction: str) -> Tensor:
        """The drift of ``net`` (``direction``'s) at bridge time ``t``: the output itself or,
        with ``predict=endpoint``, the bridge's drift towards the predicted end."""
        out = net(x, t)
        return out if self.predict == "drift" else self.bridge_target(t, x, out, out, direction)

    def _sde_drift(self, net: nn.Module, direction: str):
        """Drift in the solver's time ``s``: ``F(x, s)`` forward, ``B(x, 1 - s)`` backward."""
        if direction == "forward":
            return lambda s, x: self._net_drift(net, x, s, "forward")
        return lambda s, x: self._net_drift(net, x, 1 - s, "backward")

    def drift(self, nets: nn.ModuleDict, direction: str = "forward"):
        if self.sampler == "sde":
            return self._sde_drift(nets[NET[direction]], direction)
        sign = 1.0 if direction == "forward" else -1.0

        def ode(s, x):  # probability flow (F - B) / 2 at t = s (forward) or 1 - s (backward)
            t = s if direction == "forward" else 1 - s
            return sign * 0.5 * (self._net_drift(nets["F"], x, t, "forward")
                                 - self._net_drift(nets["B"], x, t, "backward"))

        return ode

    def _noise(self):
        sigma = self.sde.sigma
        return lambda t: torch.full_like(torch.as_tensor(t, dtype=torch.float32), sigma)

    def diffusion(self, direction: str = "forward"):
        return None if self.sampler == "ode" else self._noise()

    def transport(self, nets: nn.ModuleDict, x: Tensor, solver: Solver, grid: Tensor, *,
                  direction: str = "forward", generator: torch.Generator | None = None,
                  keep: int | None = None) -> SolveResult:
        """Forward: source -> target in ``t``; backward: target -> source (``t`` reported
        decreasing, as visited)."""
        if direction not in NET:
            raise ConfigError(f"dsbm transports forward or backward, not {direction}")
        res = solver(self.drift(nets, direction), x, grid, diffusion=self.diffusion(direction),
                     generator=generator, keep=keep)
        if direction == "backward":
            res.t = 1 - res.t
        return res

    def metrics(self, nets, x0, result, target) -> dict[str, float]:
        return {} if self._iter is None else {"imf_iter": float(self._iter)}

    def figures(self, nets: nn.ModuleDict, evaluation) -> dict:
        """2D: forward-SDE paths and conditional draws from a few source points."""
        if evaluation.x0.shape[1:] != (2,):
            return {}
        from sbrun.plots.conditionals import conditionals_2d

        x0 = evaluation.x0[:4].to(next(nets.parameters()).device)
        xr = x0.repeat_interleave(200, 0)
        res = get_solver("euler_maruyama")(self._sde_drift(nets["F"], "forward"), xr,
                                           time_grid(self.num_steps).to(xr.device),
                                           diffusion=self._noise(),
                                           generator=torch.Generator().manual_seed(0),
                                           keep=xr.shape[0])
        return {"conditionals": conditionals_2d(
            x0, res.x.reshape(4, 200, 2), res.path.reshape(4, 200, -1, 2), evaluation.target,
            title=f"dsbm ({self.first_coupling}), σ={self.sde.sigma:g}: forward SDE from 4 points")}
