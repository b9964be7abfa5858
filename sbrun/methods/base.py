"""The method protocol: a loss to regress, a drift to simulate, phases to train in.

Methods hold hyperparameters only. They never write files, log or loop over training
steps: ``pipeline/trainer.py`` and ``pipeline/evaluator.py`` do that for all methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from sbrun.data.distributions import Problem
from sbrun.sde.base import ReferenceSDE
from sbrun.solvers.base import Diffusion, Drift, Solver, SolveResult


@dataclass
class LossOutput:
    """``loss``: scalar tensor to minimise; ``stats``: floats or detached 0-d tensors for
    the logger (tensors are read lazily, so a GPU is not synchronised every step)."""

    loss: Tensor
    stats: dict[str, float | Tensor] = field(default_factory=dict)


@dataclass
class Batch:
    """A training batch: ``x0: (B, *D)`` source draws, ``x1: (B, *D)`` target draws.

    For a generative problem ``x0`` comes from the prior. ``generator`` drives every
    random choice the method makes (times, noise), which keeps resumed runs exact.
    ``coupled``: the rows are already paired by the method's ``pair_fn`` (prefetched).
    """

    x0: Tensor
    x1: Tensor
    generator: torch.Generator | None = None
    coupled: bool = False
    y: Tensor | None = None  # (B,) classes of x1 in a class-conditional run

    def rand(self, *shape: int) -> Tensor:
        """Uniform draws on the batch's device."""
        return torch.rand(shape, generator=self.generator).to(self.x1.device)

    def randn_like(self, x: Tensor) -> Tensor:
        """Standard normal draws shaped like ``x``."""
        return torch.randn(x.shape, generator=self.generator, dtype=x.dtype).to(x.device)


@dataclass
class Phase:
    """A training stage: ``steps`` optimisation steps on the networks in ``trainable``.

    Single-stage methods have one phase ``train``; DSB has one per IPF half-iteration.
    ``step_label`` is what evaluations after this phase are logged against
    (e.g. the IPF iteration) when not ``None``; ``evaluate=False`` skips the evaluation
    at the end of this phase (DSB evaluates once per IPF iteration, after both halves).
    """

    name: str
    steps: int
    trainable: tuple[str, ...] = ("net",)
    index: int = 0
    step_label: int | None = None
    evaluate: bool = True


class Method:
    """Base class. Subclasses implement :meth:`loss` and :meth:`drift`."""

    name = "method"
    networks: tuple[str, ...] = ("net",)
    cond_dim: int = 1  # conditioning coordinates the networks take (1: scalar time)
    generative_only: bool = False  # diffusion models start from their prior only
    directions: tuple[str, ...] = ("forward",)  # evaluated transports (DSB adds backward)
    sampler_label: str | None = None  # figure titles: how it samples, when not the solver
    problem: Problem | None = None  # the problem and the reference, set by ``bind``
    sde: ReferenceSDE | None = None
    # Declared capabilities (read by the pipeline, the oracle and sbrun-transport; set as
    # class attributes or in ``__init__`` / ``bind`` when they depend on the options):
    # ``uses_reference``: the method reads the reference process ``sde`` (its sigma, its
    # drift, ...); ``False`` (multimarginal, flow matching with a non-entropic coupling and
    # no bridge noise) makes an explicit ``sde=...`` / ``sde.*`` override a ConfigError.
    uses_reference: bool = True
    # ``stochastic``: a transport is random (x1 | x0 is a distribution), so the oracle and
    # ``sbrun-transport --repeats K`` draw K samples per source point.
    stochastic: bool = False
    reference_hint: str = ""  # appended to the refusal of an sde override: how to get one

    def bind(self, problem: Problem, sde: ReferenceSDE) -> None:
        """Called once by ``build``: the method sees the problem and the reference."""
        self.problem = problem
        self.sde = sde

    def bridge_sigma(self) -> float | None:
        """The sigma of the Schrödinger bridge (reference ``dX = sigma dW``) the method
        claims to sample, read from the bound ``self.sde.sigma``; ``None`` when it claims
        no bridge (the default). The Gaussian oracle scores a run against this bridge."""
        return None

    def phases(self, steps: int) -> list[Phase]:
        """Training stages; by default one of ``steps`` steps on every network."""
        return [Phase("train", steps, self.networks)]

    def begin_phase(self, phase: Phase, nets: nn.ModuleDict, ctx: dict) -> None:
        """Hook before a phase (DSB refreshes its trajectory cache here).

        ``nets``: the EMA networks; ``ctx``: ``generator``, ``device``, ``data`` and
        ``phase_step`` (> 0 when a run resumes inside this phase).
        """

    def pair_fn(self, phase: Phase):
        """The coupling ``(x0, x1, generator=g) -> (x0', x1')`` that re-pairs this phase's
        batches, or ``None``. The trainer then solves it one batch ahead on a worker
        thread (``pipeline/prefetch.py``) and hands :meth:`loss` batches with
        ``coupled=True``; it must depend on its arguments only."""
        return None

    def loss(self, nets: nn.ModuleDict, batch: Batch, phase: Phase) -> LossOutput:
        raise NotImplementedError

    def drift(self, nets: nn.ModuleDict, direction: str = "forward") -> Drift:
        """``drift(t: (B,), x: (B, *D))`` of the learned process, source -> target."""
        raise NotImplementedError

    def diffusion(self, direction: str = "forward") -> Diffusion | None:
        """Noise level ``g(t)`` of the sampling SDE, or ``None`` for an ODE."""
        return None

    def transport(
        self,
        nets: nn.ModuleDict,
        x: Tensor,
        solver: Solver,
        grid: Tensor,
        *,
        direction: str = "forward",
        generator: torch.Generator | None = None,
        keep: int | None = None,
    ) -> SolveResult:
        """Move ``x: (B, *D)`` along the learned process over ``grid``.

        ``direction="forward"`` maps source draws to the target; ``"backward"`` (for
        methods that learn both) maps target draws to the source.
        """
        return solver(
            self.drift(nets, direction),
            x,
            grid,
            diffusion=self.diffusion(direction),
            generator=generator,
            keep=keep,
        )

    def figures(self, nets: nn.ModuleDict, evaluation) -> dict:
        """Method-specific figures ``{name: matplotlib Figure}`` built with the pure
        functions of ``sbrun.plots`` from the final evaluation (``pipeline.evaluator.
        Evaluation``); the run saves and logs them. None by default."""
        return {}

    def state_dict(self) -> dict:
        """Method state the checkpoint must keep besides the networks (eot's static plan, a
        reflow round's pairs): tensors, numbers and plain containers only. None by default."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (a resumed run, ``sbrun-transport``)."""

    def model_kwargs(self, name: str) -> dict:
        """Extra keyword arguments for building network ``name`` (e.g. ``out_mult``)."""
        return {}

    def metrics(self, nets: nn.ModuleDict, x0: Tensor, result: SolveResult,
                target: Tensor) -> dict[str, float]:
        """Method-specific evaluation numbers (path energy, NLL, ...); none by default.

        ``x0``: the held-out source draws that were moved; ``result``: the forward
        transport; ``target``: held-out target draws.
        """
        return {}
