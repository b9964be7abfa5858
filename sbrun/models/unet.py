"""Time- (or alpha-) conditioned UNet for images ``(B, C, H, W)``.

The DDPM layout (Ho et al. 2020, appendix B): residual blocks at each resolution with
skip connections from the down path to the up path, optional self-attention, the
conditioning added to every residual block through a FiLM scale and shift.
Inputs whose side is not a multiple of ``2 ** (levels - 1)`` are zero-padded and the
output cropped back, so 28x28 works with any number of levels (three levels need no
padding: 28 -> 14 -> 7).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbrun.errors import ConfigError
from sbrun.models.embeddings import ClassEmbedding, SinusoidalEmbedding


def _norm(ch: int) -> nn.GroupNorm:
    groups = math.gcd(ch, 8)
    return nn.GroupNorm(groups, ch)


class ResBlock(nn.Module):
    """``h -> h + F(h, emb)``: norm, SiLU, conv, FiLM by ``emb: (B, E)``, norm, SiLU, conv."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the ``H * W`` positions, with a residual."""

    def __init__(self, ch: int, heads: int = 4):
        super().__init__()
        if ch % heads:
            raise ConfigError(f"unet: {ch} channels do not split into {heads} attention heads")
        self.heads = heads
        self.norm, self.qkv, self.out = _norm(ch), nn.Conv2d(ch, 3 * ch, 1), nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        a = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2),
                                           v.transpose(-1, -2))  # (b, heads, hw, c/heads)
        return x + self.out(a.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """``v(x, t)``: ``x: (B, C, H, W)``, ``t: (B,)`` or conditioning ``(B, K)`` -> ``(B, C, H, W)``.

    Args:
        shape: sample shape ``(C, H, W)``.
        hidden: base channel count (same key as the MLP's width, so debug presets shrink
            either network); level ``i`` has ``hidden * channel_mult[i]`` channels.
        depth: residual blocks per level on the way down (``depth + 1`` on the way up).
        channel_mult: one multiplier per resolution level; ``len(channel_mult)`` levels,
            each but the last followed by a 2x downsampling.
        attention: level indices (0 = full resolution) with self-attention after each
            residual block; ``mid_attention``: attention between the two middle blocks.
        heads: attention heads; ``dropout``: in residual blocks.
        time_dim: sinusoidal features per conditioning coordinate (``cond_dim`` of them,
            e.g. ``K`` simplex coordinates ``alpha``), mapped by an MLP to ``4 * hidden``.
        out_mult: output heads stacked along dim 1: ``(B, out_mult, C, H, W)`` when > 1.
        num_classes: ``K > 0`` adds a learned class embedding to the time embedding
            (labels ``y: (B,)`` in ``forward``; ``None`` or ``-1``: the null class).
    """

    def __init__(self, shape: Sequence[int], hidden: int = 32, depth: int = 1,
                 channel_mult: Sequence[int] = (1, 2, 2), attention: Sequence[int] = (),
                 mid_attention: bool = True, heads: int = 4, dropout: float = 0.0,
                 time_dim: int = 64, cond_dim: int = 1, out_mult: int = 1,
                 num_classes: int = 0):
        super().__init__()
        if len(shape) != 3:
            raise ConfigError(f"model=unet needs image data (C, H, W); got shape {tuple(shape)}: "
                              "use model=mlp for vectors")
        if depth < 1 or hidden < 1 or not channel_mult:
            raise ConfigError("unet: depth and hidden must be >= 1 and channel_mult non-empty")
        bad = [a for a in attention if not 0 <= a < len(channel_mult)]
        if bad:
            raise ConfigError(f"unet: attention levels {bad} outside 0..{len(channel_mult) - 1}")
        self.shape, self.out_mult = tuple(shape), out_mult
        self.multiple = 2 ** (len(channel_mult) - 1)
        c, emb_dim = shape[0], 4 * hidden
        self.embed = SinusoidalEmbedding(time_dim)
        self.emb_mlp = nn.Sequential(nn.Linear(self.embed.dim * cond_dim, emb_dim), nn.SiLU(),
                                     nn.Linear(emb_dim, emb_dim))
        self.label_embed = ClassEmbedding(num_classes, emb_dim) if num_classes else None
        self.conv_in = nn.Conv2d(c, hidden, 3, padding=1)
        chans = [hidden * m for m in channel_mult]
        self.down, skips, ch = nn.ModuleList(), [hidden], hidden
        for i, c_out in enumerate(chans):
            for _ in range(depth):
                self.down.append(self._stage(ch, c_out, emb_dim, dropout, i in attention, heads))
                ch = c_out
                skips.append(ch)
            if i < len(chans) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, dropout),
                                  Attention(ch, heads) if mid_attention else nn.Identity(),
                                  ResBlock(ch, ch, emb_dim, dropout)])
        self.up = nn.ModuleList()
        for i, c_out in reversed(list(enumerate(chans))):
            for _ in range(depth + 1):
                self.up.append(self._stage(ch + skips.pop(), c_out, emb_dim, dropout,
                                           i in attention, heads))
                ch = c_out
            if i > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"),
                                             nn.Conv2d(ch, ch, 3, padding=1)))
        self.norm_out = _norm(ch)
        self.conv_out = nn.Conv2d(ch, c * out_mult, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # the untrained net outputs 0 (EDM / DDPM++ init)
        nn.init.zeros_(self.conv_out.bias)

    @staticmethod
    def _stage(c_in, c_out, emb_dim, dropout, attn, heads) -> nn.ModuleList:
        return nn.ModuleList([ResBlock(c_in, c_out, emb_dim, dropout)]
                             + ([Attention(c_out, heads)] if attn else []))

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        b, _, height, width = x.shape
        emb = self.emb_mlp(self.embed(t).to(x.dtype))
        if self.label_embed is not None:
            emb = emb + self.label_embed(y, b).to(emb.dtype)
        elif y is not None:
            raise ConfigError("labels given to an unconditional UNet (num_classes=0)")
        pad_h, pad_w = -height % self.multiple, -width % self.multiple
        h = self.conv_in(F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x)
        hs = [h]
        for block in self.down:
            h = self._run(block, h, emb)
            hs.append(h)
        for block in self.mid:
            h = block(h) if isinstance(block, nn.Identity) else block(h, emb)
        for block in self.up:
            if isinstance(block, nn.ModuleList):
                h = self._run(block, torch.cat([h, hs.pop()], 1), emb)
            else:
                h = block(h)
        out = self.conv_out(F.silu(self.norm_out(h)))[:, :, :height, :width]
        if self.out_mult > 1:
            return out.reshape(b, self.out_mult, *self.shape)
        return out

    @staticmethod
    def _run(block: nn.Module, h: Tensor, emb: Tensor) -> Tensor:
        if not isinstance(block, nn.ModuleList):  # a downsampling conv
            return block(h)
        for layer in block:
            h = layer(h, emb)
        return h
