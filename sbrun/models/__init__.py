"""Networks: ``model(x: (B, *D), t: (B,) | cond: (B, K)) -> (B, *D)``."""

from sbrun.models.mlp import MLP
from sbrun.models.unet import UNet

__all__ = ["MLP", "UNet"]
