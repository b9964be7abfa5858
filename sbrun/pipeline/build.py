"""The ONLY place that instantiates objects from the config.

Everything below it is plain Python that tests build directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from sbrun.data.conditional import LabelledBatchSource
from sbrun.data.distributions import Problem, StandardGaussian
from sbrun.errors import ConfigError, SbrunError
from sbrun.methods.base import Method
from sbrun.methods.classifier_guidance import make_classifier_guidance
from sbrun.methods.guidance import make_conditioning
from sbrun.metrics.truth import scorer_for
from sbrun.pipeline.data import BatchSource
from sbrun.sde.base import ReferenceSDE
from sbrun.solvers import Solver, configure, get_solver

log = logging.getLogger(__name__)


@dataclass
class Components:
    """Everything a run needs, built and validated before any work starts."""

    problem: Problem
    sde: ReferenceSDE
    method: Method
    solver: Solver
    nets: nn.ModuleDict
    data: BatchSource
    device: torch.device
    scorer: object | None = None  # scores runs against problem.truth (sbrun.metrics.truth)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an unavailable CUDA is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but CUDA is not available here (use device=cpu or auto)")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"device={name}: {e}") from None


def make(group: str, node: DictConfig, **kwargs):
    """``instantiate`` with one-line errors: our own errors pass through unchanged."""
    if node is None or "_target_" not in node:
        raise ConfigError(f"config group '{group}' has no _target_ (choose one: {group}=<name>)")
    cfg = OmegaConf.to_container(node, resolve=True)
    cfg.pop("name", None) if group in ("method", "sde", "model") else None
    cfg.pop("cond_drop", None) if group == "method" else None  # sbrun.methods.guidance
    try:
        return instantiate(cfg, **kwargs, _convert_="all")
    except InstantiationException as e:
        cause = e.__cause__
        while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, SbrunError):
            raise cause from None
        msg = str(cause or e).splitlines()[0]
        raise ConfigError(f"{group}: {msg}") from None
    except SbrunError:
        raise
    except TypeError as e:
        raise ConfigError(f"{group}: {e}") from None


def task_overrides() -> list[str]:
    """The command line's overrides of this Hydra job (``[]`` outside a Hydra run, e.g.
    when ``sbrun-transport`` rebuilds a finished run from its saved config)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return []
        return [str(o) for o in HydraConfig.get().overrides.task]
    except (ImportError, ValueError, AttributeError):
        return []


def override_key(override: str) -> str:
    """``'+sde.sigma=2'`` -> ``'sde.sigma'``; ``'sde=vp'`` -> ``'sde'``."""
    return override.split("=", 1)[0].lstrip("+~").strip()


def check_overrides(overrides: list[str], method: Method, solver_fn) -> None:
    """Refuse explicit options that would change nothing: a reference (``sde=...`` or
    ``sde.*``) for a method without one, and solver options the chosen solver ignores."""
    import inspect

    taken = set(inspect.signature(solver_fn).parameters)
    for o in overrides:
        key = override_key(o)
        group, _, option = key.partition(".")
        if group == "sde" and not method.uses_reference:
            raise ConfigError(f"{o}: method={method.name} has no reference process with these "
                              "options, so the sde group changes nothing; drop it"
                              + (f" ({method.reference_hint})" if method.reference_hint else ""))
        if group == "solver" and option and option not in ("name", "steps") and option not in taken:
            raise ConfigError(f"{o}: solver={solver_fn.__name__} does not use solver.{option}; "
                              "drop it (or choose a solver that does)")


def build(cfg: DictConfig) -> Components:
    """Build data, reference SDE, method, solver and networks from ``cfg``; validate them."""
    device = resolve_device(cfg.device)
    problem = make("data", cfg.data)
    sde = make("sde", cfg.sde)
    method = make("method", cfg.method)
    base_solver = get_solver(cfg.solver.name)
    check_overrides(task_overrides(), method, base_solver.fn)
    if method.generative_only and not problem.generative:
        raise ConfigError(
            f"method={method.name} generates from its prior only, but data={problem.name} has a "
            "source distribution: use a generative data config (e.g. data=moons) or a "
            "two-way method (flow-matching, dsb, eot, stochastic-interpolant)"
        )
    method.bind(problem, sde)
    sampler = cfg.get("sampler") or {}
    clf = make_classifier_guidance(method, problem, sampler.get("classifier_path"),
                                   sampler.get("classifier_scale"))
    cond = make_conditioning(method, problem, cfg.method.get("cond_drop"),
                             sampler.get("guidance", 0.0), sampler.get("label"), clf)
    method.conditioning = cond
    options = OmegaConf.to_container(cfg.solver, resolve=True)
    solver = configure(base_solver, **{k: v for k, v in options.items() if k != "name"})
    if cfg.solver.steps < 1:
        raise ConfigError(f"solver.steps must be >= 1, got {cfg.solver.steps}")
    prior = method.prior or StandardGaussian(problem.shape)
    data = BatchSource(problem, prior=prior) if cond is None or cond.cond_drop is None else \
        LabelledBatchSource(problem, cond.labels, prior=prior)
    torch.manual_seed(cfg.seed)
    nets = nn.ModuleDict({
        k: make("model", cfg.model, shape=problem.shape, cond_dim=method.cond_dim,
             **method.model_kwargs(k), **(cond.model_kwargs() if cond else {}))
        for k in method.networks
    }).to(device)
    return Components(problem, sde, method, solver, nets, data, device, scorer_for(problem.truth))
