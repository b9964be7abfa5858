"""Paired image-restoration problems: transport a corrupted image to the clean one
(Albergo, Goldstein, Boffi, Ranganath & Vanden-Eijnden 2023, "Stochastic interpolants with
data-dependent couplings"; seed 004). Row ``i`` of the source (``t = 0``, the corrupted
image) goes with row ``i`` of the target (``t = 1``, the image): train with
``method.coupling=paired``. The observed part travels in ``x0`` itself (observed pixels
are the image's own), which is the conditioning.

- ``mnist_inpaint``: a ``size x size`` square at a seeded random position per image is
  replaced by ``N(0, noise^2)`` noise (the unobserved part); the rest is observed.
- ``mnist_superres``: the ``28 / factor`` image (``factor x factor`` average pooling),
  upsampled back to 28x28 (nearest), plus ``N(0, noise^2)`` noise everywhere.

The corruption of each image is drawn once, from ``seed`` (a fixed coupling).
The problem declares its truth, a :class:`~sbrun.data.truth.Restoration` (metrics:
:mod:`sbrun.metrics.restoration`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sbrun.data.distributions import Problem
from sbrun.data.images import ImageSet, load_mnist
from sbrun.data.truth import Restoration
from sbrun.errors import ConfigError


def inpaint(x: Tensor, size: int, noise: float, generator: torch.Generator) -> Tensor:
    """``x: (n, C, H, W)`` with one ``size x size`` square per image (random position)
    replaced by ``noise * N(0, 1)``."""
    n, _, h, w = x.shape
    if not 0 < size <= min(h, w):
        raise ConfigError(f"mnist_inpaint: data.size must be in 1..{min(h, w)}, got {size}")
    top = torch.randint(0, h - size + 1, (n,), generator=generator)
    left = torch.randint(0, w - size + 1, (n,), generator=generator)
    rows, cols = torch.arange(h), torch.arange(w)
    in_rows = (rows[None] >= top[:, None]) & (rows[None] < top[:, None] + size)  # (n, H)
    in_cols = (cols[None] >= left[:, None]) & (cols[None] < left[:, None] + size)  # (n, W)
    mask = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]  # (n, 1, H, W)
    z = noise * torch.randn(x.shape, generator=generator)
    return torch.where(mask, z, x)


def downsample(x: Tensor, factor: int) -> Tensor:
    """``factor x factor`` average pooling, ``(n, C, H, W) -> (n, C, H / f, W / f)``."""
    return F.avg_pool2d(x, factor)


def superres(x: Tensor, factor: int, noise: float, generator: torch.Generator) -> Tensor:
    """The low-resolution image upsampled back (nearest) plus ``noise * N(0, 1)``."""
    if factor < 1 or x.shape[-1] % factor or x.shape[-2] % factor:
        raise ConfigError(f"mnist_superres: data.factor={factor} must divide {tuple(x.shape[-2:])}")
    up = F.interpolate(downsample(x, factor), scale_factor=factor, mode="nearest")
    return up + noise * torch.randn(x.shape, generator=generator)


def _paired(name: str, clean: ImageSet, corrupt, seed: int, truth: Restoration) -> Problem:
    g = torch.Generator().manual_seed(10_009 + seed)
    src = ImageSet(corrupt(clean.train, g), corrupt(clean.test, g), f"{name}_x0")
    tgt = ImageSet(clean.train, clean.test, clean.name, clean.labels_train, clean.labels_test)
    return Problem(name, tgt, src, paired=True, truth=truth)


def mnist_inpaint(root: str | None = None, size: int = 14, noise: float = 1.0,
                  max_train: int | None = None, max_test: int | None = None, seed: int = 0,
                  name: str = "mnist_inpaint") -> Problem:
    """MNIST in-painting: ``x0`` = the digit with a ``size`` square of noise, ``x1`` = the digit."""
    if not noise > 0:
        raise ConfigError(f"mnist_inpaint: data.noise must be > 0, got {noise}")
    clean = load_mnist(root, max_train, max_test, seed)
    return _paired(name, clean, lambda x, g: inpaint(x, size, noise, g), seed,
                   Restoration("inpaint"))


def mnist_superres(root: str | None = None, factor: int = 2, noise: float = 0.1,
                   max_train: int | None = None, max_test: int | None = None, seed: int = 0,
                   name: str = "mnist_superres") -> Problem:
    """MNIST super-resolution: ``x0`` = the ``28 / factor`` digit upsampled plus noise."""
    if not noise >= 0:
        raise ConfigError(f"mnist_superres: data.noise must be >= 0, got {noise}")
    clean = load_mnist(root, max_train, max_test, seed)
    return _paired(name, clean, lambda x, g: superres(x, factor, noise, g), seed,
                   Restoration("superres", factor))
