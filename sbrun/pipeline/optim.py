"""The trainer's options: their check, the optimiser and the learning-rate schedule."""

from __future__ import annotations

import contextlib
import math

import torch

from sbrun.config import TrainerConfig
from sbrun.errors import ConfigError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("constant", "cosine")


def check_trainer_config(cfg: TrainerConfig) -> None:
    """Every trainer option in its range (a ``ConfigError`` naming it otherwise)."""
    for key in ("steps", "batch_size"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"trainer.{key} must be >= 1, got {getattr(cfg, key)}")
    for key in ("warmup", "eval_every", "checkpoint_every", "interrupt_at", "threads",
                "weight_decay", "lr_min", "prefetch"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"trainer.{key} must be >= 0, got {getattr(cfg, key)}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ConfigError(f"trainer.lr must be a finite number > 0, got {cfg.lr}")
    if cfg.lr_min > cfg.lr:
        raise ConfigError(f"trainer.lr_min={cfg.lr_min} must be <= trainer.lr={cfg.lr}")
    if not 0 <= cfg.ema < 1:
        raise ConfigError(f"trainer.ema is an EMA decay in [0, 1) (0 disables), got {cfg.ema}")
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown trainer.optimizer '{cfg.optimizer}'; valid: {', '.join(OPTIMIZERS)}")
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"unknown trainer.schedule '{cfg.schedule}'; valid: {', '.join(SCHEDULES)}")
    if cfg.precision not in PRECISIONS:
        raise ConfigError(f"unknown trainer.precision '{cfg.precision}'; valid: {', '.join(PRECISIONS)}")


def make_optimizer(cfg: TrainerConfig, params, device: torch.device) -> torch.optim.Optimizer:
    """Adam(W) with the multi-tensor (CPU) or fused (CUDA) implementation."""
    impl = {"fused": True} if device.type == "cuda" else {"foreach": True}
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **impl)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **impl)
    raise ConfigError(f"unknown trainer.optimizer '{cfg.optimizer}'; valid: adam, adamw")


def lr_at(cfg: TrainerConfig, step: int, total: int) -> float:
    """Learning rate at ``step`` of a phase of ``total`` steps (warm-up, then schedule)."""
    if cfg.warmup > 0 and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "cosine":
        frac = (step - cfg.warmup) / max(1, total - cfg.warmup)
        return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * frac))
    raise ConfigError(f"unknown trainer.schedule '{cfg.schedule}'; valid: constant, cosine")


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast to ``dtype`` on ``device``; none for fp32 (``dtype=None``: entering a
    disabled autocast still costs every step)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
