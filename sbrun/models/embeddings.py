"""Time / conditioning embeddings."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class SinusoidalEmbedding(nn.Module):
    """``t: (B,)`` or ``(B, K)`` -> ``(B, K * dim)`` Fourier features (Vaswani et al. 2017).

    Frequencies are geometric from 1 to ``max_period``/2π... scaled so that ``t in [0, 1]``
    spans many periods; each conditioning coordinate gets its own ``dim`` features.
    """

    def __init__(self, dim: int = 64, max_period: float = 1000.0):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half) / half) * max_period
        self.register_buffer("freqs", freqs, persistent=False)
        self.dim = 2 * half

    def forward(self, t: Tensor) -> Tensor:
        t = t.reshape(t.shape[0], -1).float()
        args = t[..., None] * self.freqs  # (B, K, half)
        emb = torch.cat([torch.cos(args), torch.sin(args)], -1)
        return emb.reshape(t.shape[0], -1)


class IdentityEmbedding(nn.Module):
    """Raw time as input features (``t: (B,)`` -> ``(B, 1)``), as in torchcfm's MLP."""

    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:
        return t.reshape(t.shape[0], -1).float()


class ClassEmbedding(nn.Module):
    """Class labels ``y: (B,)`` in ``0..K-1`` -> ``(B, dim)`` learned vectors, plus a null
    class (index ``K``) for ``y = None`` or label ``-1``: the unconditional model of
    classifier-free guidance (Ho & Salimans 2022), trained by label dropout."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes, self.dim = int(num_classes), int(dim)
        self.table = nn.Embedding(self.num_classes + 1, self.dim)

    def forward(self, y: Tensor | None, batch: int) -> Tensor:
        if y is None:
            y = torch.full((batch,), self.num_classes, dtype=torch.long, device=self.table.weight.device)
        y = torch.where(y < 0, self.num_classes, y.long())
        return self.table(y)
