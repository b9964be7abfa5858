"""Networks: ``model(x: (B, *D), t: (B,) | cond: (B, K)) -> (B, *D)``."""

from sbrun.models.mlp import MLP

__all__ = ["MLP"]
