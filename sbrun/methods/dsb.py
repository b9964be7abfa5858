"""Diffusion Schrödinger Bridge: IPF with mean matching (De Bortoli et al. 2021; seed 003).

Two networks, ``F`` (source -> target) and ``B`` (target -> source), define Gaussian
chains on the grid ``t_k = (gamma_1 + ... + gamma_k) / T`` (``T = method.horizon``; see
:mod:`dsb_chain`)::

    forward:  x_{k+1} = x_k + h_k F(x_k, t_k)     + std_k z,   x_0 ~ source,
    backward: x_k     = x_{k+1} + h_k B(x_{k+1}, t_{k+1}) + std_k z,   x_N ~ target,

so the networks are drifts in sbrun time and the means are ``F_k(x) = x + h_k F(x, t_k)``
and ``B_{k+1}(x) = x + h_k B(x, t_{k+1})``. IPF alternates the two mean-matching
regressions of seed 003, each on trajectories of the other (frozen, EMA) chain::

    B_{k+1} = argmin E_{forward} |B(X_{k+1}) - (X_{k+1} + F_k(X_k) - F_k(X_{k+1}))|^2,
    F_k     = argmin E_{backward} |F(X_k) - (X_k + B_{k+1}(X_{k+1}) - B_{k+1}(X_k))|^2,

each step weighted by ``1 / std_k^2`` (the loss is then the chains' path KL up to a
constant). The first regression uses the reference's own kernel (IPF 1).

Time, sigma and gamma: ``gamma_k`` are in DSB's units and sum to ``T``; the chain lives
on sbrun's ``[0, 1]`` with ``h_k = gamma_k / T`` and the noise is the reference's
(``sde``): for ``dX = sigma dW``, ``std_k = sigma sqrt(h_k)``. DSB's own chain, with
noise ``sqrt(2 gamma_k)``, is therefore ``sde.sigma = sqrt(2 T)`` (the slide's
swiss roll -> S-curve, ``T = 1``: ``sigma = 1.41`` on its data scale). ``T`` only fixes
the units of the ``gamma`` schedule.

Which end the reference starts from (``reference_from``): on a data -> data problem the
source (``t = 0``): IPF 1 trains ``B`` on reference paths, then ``F`` on ``B``'s paths,
and so on. On a generative problem (source = the prior at ``t = 0``, data at ``t = 1``)
the target: the reference noises the *data* towards the prior (for ``sde=vp`` it is the
VP SDE in noising time ``s = 1 - (1 - s_min) t``), so IPF 1 trains ``F``, the
prior -> data chain, as the time reversal of that noising process: a score-based
generative model (IPF 1 = SGM, seed 003). Evaluations run after each full IPF iteration
(both networks trained), logged with the iteration as the step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sbrun.config import refuse_removed
from sbrun.data.distributions import Problem
from sbrun.errors import ConfigError, check_choice
from sbrun.methods.base import Batch, LossOutput, Method, Phase
from sbrun.methods.dsb_chain import MeanFn, ReferenceChain, TrajectoryCache, gamma_schedule, run_chain
from sbrun.sde.base import ReferenceSDE, expand_t
from sbrun.solvers import Solver, SolveResult

NET = {"forward": "F", "backward": "B"}
OTHER = {"forward": "backward", "backward": "forward"}


class DSB(Method):
    """Diffusion Schrödinger Bridge (IPF by mean matching), both directions learned.

    Args:
        ipf_iters: IPF iterations; each is two phases of ``trainer.steps`` steps.
        num_steps: ``N``, steps of the chains (the NFE of a transport).
        horizon: DSB's horizon (the paper's ``T``), the sum of the ``gamma_k`` (sets their
            units only).
        schedule: ``constant`` | ``symmetric`` (increasing, then mirrored).
        gamma_ratio: ``gamma_max / gamma_min`` of the symmetric schedule.
        spacing: ``linear`` | ``geometric`` spacing of the symmetric half.
        cache_size: trajectories held in the cache, with their step means (memory:
            ``cache_size (2N+1) dim`` floats).
        cache_refresh: loss calls between refills of the cache from the frozen chain.
        reference_from: ``auto`` (target for generative problems, else source) |
            ``source`` | ``target``: the end the reference process starts from.
        sample_noise_last_step: add noise on the last step of a transport; ``False``
            returns the last step's mean, as the reference implementation samples.
        reference_drift: ``auto`` (a Brownian reference between two data sets drifts by the
            difference of their means: same bridges, same SB, see :meth:`_drift`) | ``none``.
    """

    name = "dsb"
    networks = ("F", "B")
    directions = ("forward", "backward")
    stochastic = True  # Gaussian chains: x1 | x0 is a distribution

    def __init__(self, ipf_iters: int = 10, num_steps: int = 50, horizon: float = 1.0,
                 schedule: str = "constant", gamma_ratio: float = 10.0, spacing: str = "linear",
                 cache_size: int = 1000, cache_refresh: int = 100, reference_from: str = "auto",
                 sample_noise_last_step: bool = False, reference_drift: str = "auto",
                 T: float | None = None):
        refuse_removed(T=T)  # renamed: method.horizon
        for key, value in (("ipf_iters", ipf_iters), ("cache_size", cache_size),
                           ("cache_refresh", cache_refresh)):
            if value < 1:
                raise ConfigError(f"method.{key} must be >= 1, got {value}")
        if reference_from not in ("auto", "source", "target"):
            raise ConfigError(f"unknown method.reference_from '{reference_from}'; valid: auto, "
                              "source, target")
        self.gammas = gamma_schedule(num_steps, horizon, schedule, gamma_ratio, spacing)
        self.ipf_iters, self.num_steps, self.horizon = int(ipf_iters), int(num_steps), float(horizon)
        self.sampler_label = f"{self.num_steps}-step chain"
        self.cache_size, self.cache_refresh = int(cache_size), int(cache_refresh)
        self.reference_from = reference_from
        check_choice("method.reference_drift", reference_drift, ("auto", "none"))
        self.reference_drift = reference_drift
        self.sample_noise_last_step = bool(sample_noise_last_step)
        self.cache = TrajectoryCache()
        self._ctx: dict = {}
        self._calls = 0
        self._frozen: MeanFn | None = None
        self._ipf_iter: int | None = None
        self._first_samples: Tensor | None = None  # generated after IPF 1 (the figure)

    # -- set-up --------------------------------------------------------------------
    def bind(self, problem: Problem, sde: ReferenceSDE) -> None:
        super().bind(problem, sde)
        start = self.reference_from
        if start == "auto":
            start = "target" if problem.generative else "source"
        self.reference = ReferenceChain(sde, self.gammas, start, self._drift(problem, sde))
        self.t, self.h, self.std = self.reference.t, self.reference.h, self.reference.std
        self.prior = sde.prior_distribution(problem.shape)  # VE: N(0, sigma_max^2 I)

    def _drift(self, problem: Problem, sde: ReferenceSDE) -> Tensor | None:
        """``reference_drift=auto``: on a data -> data problem with a Brownian reference, the
        constant drift ``a = E[x1] - E[x0]`` (from 10 000 draws of each side). ``dX = a dt +
        sigma dW`` is the Brownian reference tilted by ``exp(<a, X_1> / sigma^2)``, a function
        of the end point alone, so it has the same bridges and the same Schrödinger bridge;
        only IPF 1's reference paths change: they now reach the target's region, where the
        first backward net is evaluated (without it, in d = 64 the target sits ~6 stds from
        the reference's end, IPF 1's chains never return to the source, and the next forward
        chain diverges)."""
        if self.reference_drift == "none" or problem.generative or sde.sigma is None:
            return None
        g = torch.Generator().manual_seed(0)
        n = 10_000
        return (problem.target.sample(n, g).double().mean(0)
                - problem.source.sample(n, g).double().mean(0))

    def bridge_sigma(self) -> float | None:
        """The Brownian reference's ``sde.sigma`` (IPF converges to its bridge); ``None`` for
        a noising reference (VP, VE, ...), whose bridge has no Gaussian closed form here."""
        return None if self.sde.sigma is None else float(self.sde.sigma)

    def phases(self, steps: int) -> list[Phase]:
        """Per IPF iteration ``n``: train the net that reverses the reference's direction on
        paths of the other chain, then the other net; evaluate after the pair."""
        first = OTHER[self.reference.direction]
        out = []
        for n in range(1, self.ipf_iters + 1):
            for j, d in enumerate((first, OTHER[first])):
                out.append(Phase(f"ipf{n}-{d}", steps, trainable=(NET[d],), index=len(out),
                                 step_label=n, evaluate=j == 1))
        return out

    # -- chain pieces ------------------------------------------------------------------
    def _times(self, k: Tensor, direction: str, x: Tensor) -> Tensor:
        """Network time of step ``k``: ``t_k`` for ``F`` (leaving ``x_k``), ``t_{k+1}`` for ``B``."""
        t = self.t.to(x.device)[k + (direction == "backward")]
        return t.to(x.dtype)

    def net_mean(self, net: nn.Module, direction: str) -> MeanFn:
        """Mean of a step of the learned chain: ``x + h_k net(x, t)``."""

        def mean(k: Tensor, x: Tensor) -> Tensor:
            h = expand_t(self.h.to(x.device)[k], x).to(x.dtype)
            return x + h * net(x, self._times(k, direction, x))

        return mean

    def _start(self, direction: str, n: int, generator: torch.Generator) -> Tensor:
        """``n`` draws of the end a ``direction`` chain starts from (source: the prior if generative)."""
        data = self._ctx["data"]
        dist = data.source if direction == "forward" else data.target
        return dist.sample(n, generator)

    # -- training --------------------------------------------------------------------
    def begin_phase(self, phase: Phase, nets: nn.ModuleDict, ctx: dict) -> None:
        """Freeze the other chain (EMA net, or the reference in the first phase); the cache
        is (re)filled lazily, seeded by (run, phase, refill), so a run resumed inside a
        phase (``ctx['phase_step'] > 0``) rebuilds the very cache it had."""
        self._ctx = ctx
        self._calls = int(ctx.get("phase_step", 0))
        self._ipf_iter = phase.step_label
        self.cache.states = None
        train_dir = "forward" if phase.trainable == ("F",) else "backward"
        sim_dir = OTHER[train_dir]
        if phase.index == 0 and sim_dir == self.reference.direction:
            self._frozen = self.reference.mean
        else:
            frozen = nets[NET[sim_dir]]
            frozen.eval()
            self._frozen = self.net_mean(frozen, sim_dir)
        self._sim_dir, self._train_dir = sim_dir, train_dir
        self._seed = int(ctx["generator"].initial_seed()) * 1_000_003 + phase.index

    def _refill(self, device: torch.device) -> None:
        refill = self._calls // self.cache_refresh
        seed = (self._seed * 1_000_003 + refill) % (2**63)
        g_data = torch.Generator().manual_seed(seed)
        g_noise = torch.Generator(device=device).manual_seed((seed + 1) % (2**63))
        x = self._start(self._sim_dir, self.cache_size, g_data).to(device)
        self.cache.fill(self._frozen, x, self.std, self._sim_dir, g_noise)

    def mean_matching_target(self, x_k: Tensor, x_k1: Tensor, k: Tensor,
                             mean_other: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The regression of seed 003 for the net trained in this phase: ``(x, shift)``.

        Training ``B`` on forward pairs: ``x = x_{k+1}``, target mean
        ``x_{k+1} + F_k(x_k) - F_k(x_{k+1})``; training ``F`` on backward pairs:
        ``x = x_k``, target ``x_k + B_{k+1}(x_{k+1}) - B_{k+1}(x_k)`` (``F_k``, ``B_{k+1}``:
        the frozen chain's means; ``mean_other``, its mean at the other point, when the
        cache has it). Returns the input and ``shift = target - x``, ``(B, *D)``.
        """
        x_in, x_other = (x_k1, x_k) if self._train_dir == "backward" else (x_k, x_k1)
        with torch.no_grad():
            if mean_other is None:
                m = self._frozen(torch.cat([k, k]), torch.cat([x_other, x_in]))
                return x_in, m[: x_in.shape[0]] - m[x_in.shape[0]:]
            return x_in, mean_other - self._frozen(k, x_in)

    def mean_matching(self, net: nn.Module, x_k: Tensor, x_k1: Tensor, k: Tensor,
                      mean_other: Tensor | None = None) -> Tensor:
        """Per-sample loss ``|mean_theta(x) - target|^2 / std_k^2`` -> ``(B,)``, with
        ``mean_theta(x) = x + h_k net(x, t)``: the chains' path KL up to a constant."""
        x_in, shift = self.mean_matching_target(x_k, x_k1, k, mean_other)
        h = expand_t(self.h.to(x_in.device)[k], x_in).to(x_in.dtype)
        drift = net(x_in, self._times(k, self._train_dir, x_in))
        err = (h * drift - shift).reshape(x_in.shape[0], -1).pow(2).sum(1)
        return err / self.std.to(x_in.device)[k].to(x_in.dtype) ** 2

    def loss(self, nets: nn.ModuleDict, batch: Batch, phase: Phase) -> LossOutput:
        if self._frozen is None:
            raise RuntimeError("DSB.loss called before begin_phase")
        if self.cache.states is None or self._calls % self.cache_refresh == 0:
            self._refill(batch.x1.device)
        self._calls += 1
        x_k, x_k1, k, mean_other = self.cache.sample(batch.x1.shape[0], batch.generator)
        loss = self.mean_matching(nets[NET[self._train_dir]], x_k, x_k1, k, mean_other).mean()
        return LossOutput(loss, {"loss": loss.detach()})

    # -- sampling ----------------------------------------------------------------------
    def drift(self, nets: nn.ModuleDict, direction: str = "forward"):
        """The network's drift ``(t, x) -> (B, *D)`` in its direction of travel (trained at
        the grid times only: :meth:`transport` runs the discrete chain)."""
        net = nets[NET[direction]]
        return lambda t, x: net(x, t)

    def diffusion(self, direction: str = "forward"):
        """Noise level ``std_k / sqrt(h_k)`` of the step containing ``t``."""
        g = (self.std / self.h.sqrt()).to(torch.float32)

        def f(t: Tensor) -> Tensor:
            k = torch.searchsorted(self.t[1:-1].to(t.device, torch.float64),
                                   torch.as_tensor(t, dtype=torch.float64), right=True)
            return g.to(k.device)[k]

        return f

    @torch.no_grad()
    def transport(self, nets: nn.ModuleDict, x: Tensor, solver: Solver, grid: Tensor, *,
                  direction: str = "forward", generator: torch.Generator | None = None,
                  keep: int | None = None) -> SolveResult:
        """Run the learned ``N``-step chain (``solver`` and ``grid`` are not used: DSB's
        chain is its own discretisation). ``path: (keep, N+1, *D)`` and ``t`` are in the
        order visited (``t`` decreasing for ``backward``); NFE = ``N``."""
        if direction not in NET:
            raise ConfigError(f"dsb transports forward or backward, not {direction}")
        mean = self.net_mean(nets[NET[direction]], direction)
        x_end, path = run_chain(mean, x, self.std, direction, generator, keep,
                                noise_last_step=self.sample_noise_last_step)
        t = self.t.to(torch.float32)
        return SolveResult(x=x_end, nfe=self.num_steps,
                           t=t if direction == "forward" else t.flip(0), path=path)

    def metrics(self, nets, x0, result, target) -> dict[str, float]:
        """The IPF iteration the evaluation belongs to (its generated points are kept for
        the first-vs-last figure: IPF 1 is the score-based model, seed 003)."""
        if self._ipf_iter is None:
            return {}
        if self._ipf_iter == 1:
            self._first_samples = result.x[:2000].detach().cpu()
        return {"ipf_iter": float(self._ipf_iter)}

    def figures(self, nets, evaluation) -> dict:
        """Data next to the samples generated after IPF iteration 1 and after the last
        (seed 003: "after 1 and 20 DSB steps" in 2D, "DSB 1" / "DSB 8" on MNIST), when this
        process saw IPF 1 (not after a resume past it)."""
        first = self._first_samples
        if first is None or self._ipf_iter in (None, 1) or (first.dim() != 4 and first.shape[1:] != (2,)):
            return {}
        n = self._ipf_iter
        panels = {"data (held-out target)": evaluation.target, "after IPF iteration 1 (= SGM)": first,
                  f"after IPF iteration {n}": evaluation.result.x}
        title = (f"DSB on {self.problem.name}, horizon {self.horizon:g}, N = {self.num_steps}: "
                 f"generated at t = 1 after 1 and {n} IPF iterations")
        if first.dim() == 4:
            from sbrun.plots.images import image_panels

            return {"ipf_first_last": image_panels(panels, title=title)}
        from sbrun.plots.scatter import side_by_side

        return {"ipf_first_last": side_by_side(panels, title)}
