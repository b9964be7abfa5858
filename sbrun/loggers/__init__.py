"""Loggers: JSONL files (always), W&B (offline by default), rich console."""

from sbrun.loggers.base import JsonlLogger, Logger, MultiLogger
from sbrun.loggers.console import ConsoleLogger
from sbrun.loggers.wandb_logger import WandbLogger

__all__ = ["Logger", "MultiLogger", "JsonlLogger", "ConsoleLogger", "WandbLogger"]
