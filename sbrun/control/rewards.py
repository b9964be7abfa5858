"""Terminal rewards ``R(x): (B, *D) -> (B,)`` for reward fine-tuning (seed 002: ``R(x) = |x|``).

The control problem uses ``beta(x) = -R(x) / lambda`` (``lambda = method.reward_scale``,
a temperature), whose optimum tilts the base law by ``exp(R / lambda)``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from sbrun.errors import ConfigError, DataError

REWARDS = ("norm", "quadratic", "classifier")


class NormReward(nn.Module):
    """``R(x) = |x|`` (the Euclidean norm of the flattened sample; the slide's reward)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1).norm(dim=1)


class QuadraticReward(nn.Module):
    """``R(x) = -|x - c|^2 / 2``: tilting ``N(m, S)`` by ``exp(R / lambda)`` gives
    ``N(m*, S*)`` with ``S*^{-1} = S^{-1} + I / lambda``, ``m* = S* (S^{-1} m + c / lambda)``."""

    def __init__(self, center: Tensor):
        super().__init__()
        self.register_buffer("center", torch.as_tensor(center, dtype=torch.float32).flatten())

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        return -0.5 * (flat - self.center.to(flat)).pow(2).sum(1)


class ClassifierReward(nn.Module):
    """``R(x) = log p(y = cls | x)`` under the FID classifier (``scripts/train_classifier.py``).

    The classifier's weights are frozen; gradients flow to ``x`` only.
    """

    def __init__(self, classifier: nn.Module, cls: int):
        super().__init__()
        self.classifier = classifier.eval().requires_grad_(False)
        self.cls = int(cls)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.classifier.logits(x)
        return torch.log_softmax(logits.float(), dim=1)[:, self.cls]


def make_reward(name: str, shape: tuple[int, ...], center=None, reward_class: int | None = None,
                classifier_path: str | None = None) -> nn.Module:
    """The reward ``name`` for samples of ``shape``; bad options are one-line errors."""
    if name == "norm":
        return NormReward()
    if name == "quadratic":
        d = 1
        for s in shape:
            d *= s
        c = torch.zeros(d) if center is None else torch.as_tensor(center, dtype=torch.float32).flatten()
        if c.numel() != d:
            raise ConfigError(f"method.reward_center has {c.numel()} entries, the data has dimension {d}")
        return QuadraticReward(c)
    if name == "classifier":
        if len(shape) != 3:
            raise ConfigError(f"method.reward=classifier needs image data, got samples of shape {shape}")
        if not classifier_path:
            raise ConfigError("method.reward=classifier needs method.classifier_path (or "
                              "eval.classifier_path): a file written by scripts/train_classifier.py")
        if not Path(classifier_path).is_file():
            raise DataError(f"classifier {classifier_path} not found "
                            "(scripts/train_classifier.py writes one)")
        from sbrun.metrics.classifier import load_classifier

        clf = load_classifier(classifier_path)  # torch.load(weights_only=True)
        n = clf.config["n_classes"]
        if reward_class is None or not 0 <= int(reward_class) < n:
            raise ConfigError(f"method.reward_class must be in 0..{n - 1}, got {reward_class}")
        return ClassifierReward(clf, int(reward_class))
    raise ConfigError(f"unknown method.reward '{name}'; valid: {', '.join(REWARDS)}")


def reward_grad(reward: nn.Module, x: Tensor) -> Tensor:
    """``grad_x R(x)`` for ``x: (B, *D)`` -> ``(B, *D)`` (per sample: ``R`` acts row-wise)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(reward(x).sum(), x)
    return g
