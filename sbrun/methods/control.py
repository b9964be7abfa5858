"""Schrödinger bridges as stochastic optimal control (seed 002; :mod:`sbrun.control`).

A network ``u(t, x)`` steers a base process, ``dX = (f_base + g u) dt + g dW``, to
minimise ``E[ int_0^1 |u|^2 / 2 dt + beta(X_1) ]``: reward fine-tuning
(``method.reward``: ``beta = -R / lambda``, target ``p_base exp(R / lambda) / Z``) or
data-free sampling (``method.energy``: target ``exp(-E) / Z``). The base is

* the reference ``sde`` run from the origin (memoryless): ``sde=brownian`` (``dX = sigma
  dW``) or ``sde=ve`` (its geometric noise, Adjoint Sampling's) -- by default;
* a trained run, ``method.base_run=<run dir>``: a flow-matching run as its memoryless
  chain (Domingo-Enrich et al. 2024; :class:`~sbrun.control.chains.MemorylessFlowChain`),
  a ddpm / score-sde run as its own reverse chain from its prior
  (:class:`~sbrun.control.chains.DiffusionChain`);
* or, with ``method.base_steps > 0``, a flow-matching velocity trained on the data in a
  first phase ``base`` of this run (then phase ``finetune``): one command from data to
  the fine-tuned model.

The run's ``target`` is the exactly tilted law (it replaces the data config's target,
which is the base's data or, on the reference, only fixes the dimension); W2 and KL are
scored against it. Gradient estimators (``method.estimator``): ``backprop``,
``adjoint``, ``adjoint_matching`` (:mod:`sbrun.control.estimators`).
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from sbrun.control import estimators as est
from sbrun.control.chains import Chain, MemorylessFlowChain, reference_chain
from sbrun.control.objective import energy_objective, reward_objective
from sbrun.control.replay import ReplayBuffer, clip_norm, reciprocal_matching_loss, tilted_adjoint
from sbrun.data.distributions import Problem, StandardGaussian
from sbrun.errors import ConfigError, check_positive
from sbrun.methods.base import Batch, LossOutput, Method, Phase
from sbrun.sde.base import ReferenceSDE
from sbrun.solvers.base import SolveResult

log = logging.getLogger(__name__)


class Control(Method):
    """Stochastic optimal control on a base chain of ``steps`` steps (module docstring).

    Args:
        reward: ``norm`` | ``quadratic`` | ``classifier`` (or ``None`` with ``energy``).
        energy: ``mixture8`` | ``ring`` | ``funnel`` (data-free; reference base only).
        reward_scale: the temperature ``lambda`` of ``beta = -R / lambda``.
        reward_center: ``c`` of the quadratic reward ``-|x - c|^2 / 2`` (default 0).
        reward_class, classifier_path: the classifier reward ``log p(class | x)``.
        estimator: ``backprop`` | ``adjoint`` | ``adjoint_matching``.
        am_times: steps ``K`` of the adjoint-matching regression per trajectory (0: all).
        lean: adjoint matching with the lean adjoint (``False``: the full adjoint).
        replay: adjoint matching on the reference: the size of Adjoint Sampling's replay
            buffer of on-policy end points, regressed on base bridges
            (:mod:`sbrun.control.replay`); 0: on-policy adjoint matching.
        adjoint_clip: cap on the per-sample norm of ``grad beta(X_1)`` (0: none).
        target_samples: with ``replay``, regress onto ``E_{P*}[grad beta(X_1) | X_t]`` estimated
            by importance sampling with this many draws (0: the buffer's own end point).
        base_run: a trained flow-matching / ddpm / score-sde run directory used as the base.
        base_steps: train the base flow on the data for this many steps first (0: none).
        steps: steps ``N`` of the chain (``${solver.steps}``: training and sampling agree).
        target_pool: importance-resampling pool per target draw.
    """

    name = "control"
    stochastic = True
    samples_sde = True

    def __init__(self, reward: str | None = None, energy: str | None = None,
                 reward_scale: float = 1.0, reward_center=None, reward_class: int | None = None,
                 classifier_path: str | None = None, estimator: str = "adjoint_matching",
                 am_times: int = 0, lean: bool = True, base_run: str | None = None,
                 base_steps: int = 0, steps: int = 100, target_pool: int = 30,
                 replay: int = 0, adjoint_clip: float = 0.0, target_samples: int = 0):
        from sbrun.control.energies import ENERGIES
        from sbrun.control.rewards import REWARDS

        if (reward is None) == (energy is None):
            raise ConfigError("method=control needs exactly one of method.reward "
                              f"({'|'.join(REWARDS)}) and method.energy ({'|'.join(ENERGIES)})")
        if reward is not None and reward not in REWARDS:
            raise ConfigError(f"unknown method.reward '{reward}'; valid: {', '.join(REWARDS)}")
        if energy is not None and energy not in ENERGIES:
            raise ConfigError(f"unknown method.energy '{energy}'; valid: {', '.join(ENERGIES)}")
        self.estimator = est.check_estimator(estimator)
        self.reward_scale = float(check_positive("method.reward_scale", reward_scale))
        for key, value, low in (("am_times", am_times, 0), ("base_steps", base_steps, 0),
                                ("steps", steps, 1), ("target_pool", target_pool, 1),
                                ("replay", replay, 0), ("adjoint_clip", adjoint_clip, 0),
                                ("target_samples", target_samples, 0)):
            if value < low:
                raise ConfigError(f"method.{key} must be >= {low}, got {value}")
        if base_run and base_steps:
            raise ConfigError("method.base_run and method.base_steps > 0 are exclusive: load a base "
                              "or train one")
        if energy is not None and (base_run or base_steps):
            raise ConfigError("method.energy samples from the reference (data-free): drop "
                              "method.base_run / method.base_steps")
        if replay and (estimator != "adjoint_matching" or base_run or base_steps or not lean):
            raise ConfigError("method.replay > 0 is reciprocal adjoint matching on the reference "
                              "(dX = g dW from the origin): it needs estimator=adjoint_matching, "
                              "lean=true and no base_run / base_steps")
        if base_run:
            from sbrun.control.base_run import check_base_run

            check_base_run(base_run)  # a missing or non-generative run fails now
        self.reward, self.energy, self.reward_center = reward, energy, reward_center
        self.reward_class, self.classifier_path = reward_class, classifier_path
        self.am_times, self.lean, self.base_run = int(am_times), bool(lean), base_run
        self.base_steps, self.steps, self.target_pool = int(base_steps), int(steps), int(target_pool)
        if target_samples and not replay:
            raise ConfigError("method.target_samples > 0 needs method.replay > 0 (the tilted "
                              "adjoint target of reciprocal adjoint matching)")
        self.adjoint_clip, self.target_samples = float(adjoint_clip), int(target_samples)
        self.buffer = ReplayBuffer(replay) if replay else None
        self.base = "run" if base_run else "train" if base_steps else "reference"
        self.uses_reference = self.base == "reference"
        self.networks = ("base", "net") if self.base == "train" else ("net",)
        self.sampler_label = f"controlled chain × {self.steps}, {estimator}"
        self._base_net: nn.Module | None = None  # the flow of phase 'base'
        self._run = None  # a loaded method.base_run (sbrun.control.base_run.BaseRun)

    # -- setup ---------------------------------------------------------------------------
    def bind(self, problem: Problem, sde: ReferenceSDE) -> None:
        if not problem.generative:
            what = "method.reward fine-tunes a generative model" if self.reward else \
                "method.energy samples from noise"
            raise ConfigError(f"{what}, but data={problem.name} is a data->data problem (it has a "
                              "source): use a generative data config (e.g. data=8gaussians)")
        super().bind(problem, sde)
        shape = problem.shape
        if self.base == "reference":
            ref = reference_chain(sde, shape, self.steps)  # sde=brownian | ve, else one line
            base_law, self.prior = ref.terminal(), ref.prior  # X_1's law; the origin
        else:
            self.prior = StandardGaussian(shape)
            base_law = problem.target
        if self.base == "run":
            from sbrun.control.base_run import load_base_run

            run = load_base_run(self.base_run)
            if run.problem.name != problem.name or run.problem.shape != shape:
                raise ConfigError(f"method.base_run was trained on data={run.problem.name}, this run "
                                  f"has data={problem.name}: use the base's data config")
            self._run, base_law = run, run.problem.target
            self.prior = run.prior or self.prior
        self.data_target = base_law
        if self.energy:
            obj = energy_objective(self.energy, base_law.std, shape)
        else:
            obj = reward_objective(self.reward, self.reward_scale, base_law, shape, self.reward_center,
                                   self.reward_class, self.classifier_path, self.target_pool)
        self.objective = obj
        if self.base == "reference":
            log.info("method=control on the reference: data=%s only sets the dimension; the target "
                     "is %s", problem.name, obj.target.name)
        problem.target = obj.target  # the run is scored against the exactly tilted law

    def chain(self, nets: nn.ModuleDict, steps: int | None = None) -> Chain:
        """The base chain; a trained base uses the frozen (EMA) velocity."""
        steps = steps or self.steps
        if self.base == "reference":
            return reference_chain(self.sde, self.problem.shape, steps)
        if self._run is not None:
            return self._run.chain(steps)
        velocity = self._base_net if self._base_net is not None else nets["base"]
        return MemorylessFlowChain(self.problem.shape, steps, velocity)

    # -- training --------------------------------------------------------------------------
    def phases(self, steps: int) -> list[Phase]:
        """``finetune`` (after ``base`` when the base flow is trained here)."""
        first = [Phase("base", self.base_steps, ("base",), evaluate=False)] if self.base == "train" else []
        return [*first, Phase("finetune", steps, ("net",), index=len(first))]

    def begin_phase(self, phase: Phase, nets: nn.ModuleDict, ctx: dict) -> None:
        """Fine-tuning steers the EMA base of the first phase (or the loaded base run)."""
        self.objective.beta.to(ctx["device"])
        if self.base == "run":
            self._run.net.to(ctx["device"])
        elif self.base == "train" and phase.name == "finetune":
            self._base_net = nets["base"]

    def base_loss(self, nets: nn.ModuleDict, batch: Batch) -> LossOutput:
        """Flow matching on ``x_t = t x1 + (1 - t) x0``, independent ``x0 ~ N(0, I)``."""
        x0 = batch.x0
        x1 = self.data_target.sample(x0.shape[0], batch.generator).to(x0.device)
        t = batch.rand(x0.shape[0])
        tt = t.reshape(-1, *([1] * (x0.dim() - 1)))
        v = nets["base"](tt * x1 + (1 - tt) * x0, t)
        loss = (v - (x1 - x0)).pow(2).reshape(x0.shape[0], -1).sum(1).mean()
        return LossOutput(loss, {"loss": loss.detach()})

    def loss(self, nets: nn.ModuleDict, batch: Batch, phase: Phase) -> LossOutput:
        if phase.name == "base":
            return self.base_loss(nets, batch)
        chain, beta, u, g = self.chain(nets), self.objective.beta, nets["net"], batch.generator
        if self.estimator == "backprop":
            loss, _ = est.backprop_loss(chain, u, batch.x0, beta, g)
            return LossOutput(loss, {"loss": loss.detach(), "objective": loss.detach()})
        if self.estimator == "adjoint":
            loss, _ = est.adjoint_loss(chain, u, batch.x0, beta, g)
            return LossOutput(loss, {"loss": loss.detach(), "objective": loss.detach()})
        if self.buffer is not None:
            return self.replay_loss(chain, u, batch)
        loss, _, obj = est.adjoint_matching_loss(chain, u, batch.x0, beta, g, self.am_times,
                                                 self.lean, clip=self.adjoint_clip)
        return LossOutput(loss, {"loss": loss.detach(), "objective": obj.mean()})

    def replay_loss(self, chain: Chain, u: nn.Module, batch: Batch) -> LossOutput:
        """One on-policy batch of end points into the buffer, one regression batch from it."""
        beta, g = self.objective.beta, batch.generator
        ro = est.rollout(chain, u, batch.x0, beta, g, keep=False)
        self.buffer.add(ro.xs[-1], clip_norm(est.terminal_adjoint(beta, ro.xs[-1]), self.adjoint_clip))
        x1, a = self.buffer.sample(batch.x0.shape[0], g)
        target = None if not self.target_samples else lambda k, x: tilted_adjoint(
            chain, beta, k, x, self.target_samples, g, self.adjoint_clip)
        loss = reciprocal_matching_loss(chain, u, x1, a, g, target)
        return LossOutput(loss, {"loss": loss.detach(), "objective": (ro.running + ro.beta).mean()})

    def state_dict(self) -> dict:
        return {"buffer": self.buffer.state_dict()} if self.buffer is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.buffer is not None and "buffer" in state:
            self.buffer.load_state_dict(state["buffer"])

    # -- sampling ----------------------------------------------------------------------------
    @torch.no_grad()
    def simulate(self, nets: nn.ModuleDict, x: Tensor, steps: int, controlled: bool = True,
                 generator: torch.Generator | None = None, keep: int | None = None) -> SolveResult:
        """Run the (controlled) chain from ``x: (B, *D)``; ``controlled=False``: the base."""
        chain = self.chain(nets, steps)
        ro = est.rollout(chain, nets["net"] if controlled else None, x, self.objective.beta,
                         generator, keep=bool(keep))
        path = ro.xs[:, :keep].transpose(0, 1).contiguous() if keep else None
        nfe = steps * (int(controlled) + int(self.base != "reference"))
        return SolveResult(ro.xs[-1], nfe, chain.times.float(), path)

    def transport(self, nets, x, solver, grid, *, direction="forward", generator=None, keep=None):
        return self.simulate(nets, x, len(grid) - 1, True, generator, keep)

    def metrics(self, nets, x0, result, target) -> dict[str, float]:
        from sbrun.control.metrics import control_metrics

        return control_metrics(self, nets, x0, result, target)

    def figures(self, nets, evaluation) -> dict:
        from sbrun.control.metrics import control_figures

        return control_figures(self, nets, evaluation)
