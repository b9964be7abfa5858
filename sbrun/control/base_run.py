"""Load a trained run as the base process of ``method=control`` (``method.base_run=<run dir>``).

The run's resolved ``.hydra/config.yaml`` says what it is; its EMA weights come from
``checkpoints/last.pt`` read with ``torch.load(weights_only=True)`` (tensors and plain
containers only: nothing is unpickled). A base must be a generative flow-matching run
with the linear path, ``sigma = 0`` and independent coupling (the memoryless chain of
:mod:`sbrun.control.chains` is derived for ``x_t = t x1 + (1 - t) x0``, ``x0 ~ N(0, I)``
independent of ``x1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from sbrun.data.distributions import Problem
from sbrun.errors import ConfigError

GENERATIVE_BASES = {"FlowMatching": "flow-matching"}
NOT_YET = {"DDPM": "ddpm", "ScoreSDE": "score-sde"}


@dataclass
class BaseRun:
    """A loaded base: the velocity network (frozen, eval mode), its problem and config."""

    velocity: nn.Module
    problem: Problem
    cfg: DictConfig
    path: Path


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
    if kind in NOT_YET:
        raise ConfigError(f"method.base_run={path} is a {NOT_YET[kind]} run; only flow-matching "
                          "bases are supported so far (train one with method=flow-matching)")
    if kind not in GENERATIVE_BASES:
        raise ConfigError(f"method.base_run={path} is a '{kind or 'unknown'}' run, not a generative "
                          f"model; valid bases: {', '.join(GENERATIVE_BASES.values())}")
    m = cfg.method
    if m.get("path", "linear") != "linear" or float(m.get("sigma", 0.0)) != 0.0 \
            or m.get("coupling", "independent") != "independent" or int(m.get("reflow", 0)):
        raise ConfigError(f"method.base_run={path}: the memoryless chain needs a flow-matching base "
                          "with path=linear, sigma=0, coupling=independent and no reflow")
    return cfg


def load_base_run(path: str) -> BaseRun:
    """Check, then build the base's problem and velocity network with its EMA weights."""
    from sbrun.pipeline.build import make

    cfg = check_base_run(path)
    problem = make("data", cfg.data)
    if not problem.generative:
        raise ConfigError(f"method.base_run={path} was trained on data={problem.name}, which has a "
                          "source distribution: a base must be generative (noise -> data)")
    net = make("model", cfg.model, shape=problem.shape, cond_dim=1)
    state = torch.load(Path(path) / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    prefix = "net."
    weights = {k[len(prefix):]: v for k, v in state["ema"].items() if k.startswith(prefix)}
    net.load_state_dict(weights)
    return BaseRun(net.eval().requires_grad_(False), problem, cfg, Path(path))
