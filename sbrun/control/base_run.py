"""Load a trained run as the base process of ``method=control`` (``method.base_run=<run dir>``).

The run's resolved ``.hydra/config.yaml`` says what it is; its EMA weights come from
``checkpoints/last.pt`` read with ``torch.load(weights_only=True)`` (tensors and plain
containers only: nothing is unpickled). A base is an unconditional generative run of

* ``flow-matching`` with the linear path, ``sigma = 0`` and independent coupling (the
  memoryless chain of :class:`~sbrun.control.chains.MemorylessFlowChain` is derived for
  ``x_t = t x1 + (1 - t) x0``, ``x0 ~ N(0, I)`` independent of ``x1``);
* ``ddpm`` or ``score-sde`` (any noising SDE): the run's own reverse kernel from its prior
  (:class:`~sbrun.control.chains.DiffusionChain`), whatever sampler the run used itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from torch import nn

from sbrun.control.chains import Chain, DiffusionChain, MemorylessFlowChain
from sbrun.data.distributions import Distribution, Problem
from sbrun.errors import ConfigError

GENERATIVE_BASES = {"FlowMatching": "flow-matching", "DDPM": "ddpm", "ScoreSDE": "score-sde"}


@dataclass
class BaseRun:
    """A loaded base: its network (frozen, eval mode), problem, config and kind; diffusion
    bases also carry their reverse ``kernel`` and ``prior``."""

    net: nn.Module
    problem: Problem
    cfg: DictConfig
    path: Path
    kind: str = "flow-matching"
    kernel: object = None
    prior: Distribution | None = None
    _chains: dict = field(default_factory=dict)

    def chain(self, steps: int) -> Chain:
        """The base chain of ``steps`` steps (memoryless flow, or the diffusion's reverse)."""
        if self.kind == "flow-matching":
            return MemorylessFlowChain(self.problem.shape, steps, self.net)
        if steps not in self._chains:  # keeps the diffusion chain's table of step stds
            self._chains[steps] = DiffusionChain(self.problem.shape, steps, self.kernel, self.prior,
                                                 self.net)
        return self._chains[steps]


def _method_class(cfg: DictConfig) -> str:
    return str(OmegaConf.select(cfg, "method._target_") or "").rsplit(".", 1)[-1]


def check_base_run(path: str) -> DictConfig:
    """The base run's config, after the checks that need no data or weights."""
    run = Path(path)
    cfg_path, ckpt = run / ".hydra" / "config.yaml", run / "checkpoints" / "last.pt"
    if not run.is_dir():
        raise ConfigError(f"method.base_run={path}: no such run directory")
    if not cfg_path.is_file() or not ckpt.is_file():
        raise ConfigError(f"method.base_run={path} is not a finished sbrun run "
                          "(needs .hydra/config.yaml and checkpoints/last.pt)")
    cfg = OmegaConf.load(cfg_path)
    kind = _method_class(cfg)
    if kind not in GENERATIVE_BASES:
        raise ConfigError(f"method.base_run={path} is a '{kind or 'unknown'}' run, not a generative "
                          f"model; valid bases: {', '.join(GENERATIVE_BASES.values())}")
    m = cfg.method
    if m.get("cond_drop") is not None:
        raise ConfigError(f"method.base_run={path} is class-conditional (method.cond_drop); a base "
                          "must be an unconditional generative run")
    if kind != "FlowMatching":
        return cfg
    if m.get("path", "linear") != "linear" or float(m.get("sigma", 0.0)) != 0.0 \
            or m.get("coupling", "independent") != "independent" or int(m.get("reflow", 0)):
        raise ConfigError(f"method.base_run={path}: the memoryless chain needs a flow-matching base "
                          "with path=linear, sigma=0, coupling=independent and no reflow")
    return cfg


def load_base_run(path: str) -> BaseRun:
    """Check, then build the base's problem and network with its EMA weights (and, for a
    diffusion, its method bound to its own noising SDE, whose ``kernel`` steps the chain)."""
    from sbrun.pipeline.build import make
    from sbrun.pipeline.checkpoint import load_checkpoint, load_weights

    cfg = check_base_run(path)
    kind = GENERATIVE_BASES[_method_class(cfg)]
    ckpt = Path(path) / "checkpoints" / "last.pt"
    state = load_checkpoint(ckpt)  # torch.load(weights_only=True); a bad file fails here
    problem = make("data", cfg.data)
    if not problem.generative:
        raise ConfigError(f"method.base_run={path} was trained on data={problem.name}, which has a "
                          "source distribution: a base must be generative (noise -> data)")
    method = None
    if kind != "flow-matching":
        method = make("method", cfg.method)
        method.bind(problem, make("sde", cfg.sde))
    net = make("model", cfg.model, shape=problem.shape, cond_dim=1,
               **(method.model_kwargs("net") if method else {}))
    prefix = "net."
    load_weights(net, {k[len(prefix):]: v for k, v in state["ema"].items() if k.startswith(prefix)},
                 ckpt)
    net = net.eval().requires_grad_(False)
    if method is None:
        return BaseRun(net, problem, cfg, Path(path))
    return BaseRun(net, problem, cfg, Path(path), kind, method.kernel(nn.ModuleDict({"net": net})),
                   method.prior)
