"""Time-conditioned MLP for vectors of any dimension."""

from __future__ import annotations

from torch import Tensor, nn

from sbrun.errors import ConfigError
from sbrun.models.embeddings import ClassEmbedding, IdentityEmbedding, SinusoidalEmbedding

ACTIVATIONS = {"silu": nn.SiLU, "selu": nn.SELU, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class MLP(nn.Module):
    """``v(x, t)``: ``x: (B, *D)``, ``t: (B,)`` (or conditioning ``(B, K)``) -> ``(B, *D)``.

    Args:
        shape: sample shape ``D`` (flattened internally).
        hidden: width of hidden layers; ``depth``: number of hidden layers.
        time_embedding: ``sinusoidal`` (Fourier features of ``time_dim``) or ``raw``
            (t concatenated as is, torchcfm's choice).
        cond_dim: number of conditioning coordinates (1 for a scalar time).
        out_mult: number of output heads stacked along dim 1 (e.g. 2 for velocity + score);
            with ``out_mult > 1`` the output is ``(B, out_mult, *D)``.
        num_classes: ``K > 0`` adds a learned class embedding (``class_dim`` features,
            :class:`~sbrun.models.embeddings.ClassEmbedding`); ``forward(x, t, y)`` then
            takes labels ``y: (B,)`` in ``0..K-1``, ``None`` meaning the null class.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        hidden: int = 256,
        depth: int = 3,
        activation: str = "silu",
        time_embedding: str = "sinusoidal",
        time_dim: int = 64,
        cond_dim: int = 1,
        out_mult: int = 1,
        num_classes: int = 0,
        class_dim: int = 32,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(f"unknown model.activation '{activation}'; valid: {sorted(ACTIVATIONS)}")
        self.shape = tuple(shape)
        self.out_mult = out_mult
        d = 1
        for s in self.shape:
            d *= s
        if time_embedding == "sinusoidal":
            self.embed = SinusoidalEmbedding(time_dim)
        elif time_embedding == "raw":
            self.embed = IdentityEmbedding(1)
        else:
            raise ConfigError(f"unknown model.time_embedding '{time_embedding}'; valid: raw, sinusoidal")
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = []
        self.label_embed = ClassEmbedding(num_classes, class_dim) if num_classes else None
        width = d + self.embed.dim * cond_dim + (class_dim if num_classes else 0)
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), act()]
            width = hidden
        layers.append(nn.Linear(width, d * out_mult))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        import torch

        parts = [x.reshape(x.shape[0], -1), self.embed(t).to(x.dtype)]
        if self.label_embed is not None:
            parts.append(self.label_embed(y, x.shape[0]).to(x.dtype))
        elif y is not None:
            raise ConfigError("labels given to an unconditional MLP (num_classes=0)")
        h = torch.cat(parts, 1)
        out = self.net(h)
        if self.out_mult > 1:
            return out.reshape(x.shape[0], self.out_mult, *self.shape)
        return out.reshape(x.shape)
