"""Image figures: a grid of samples, and labelled rows (source / generated / target)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def tile(x, nrow: int = 8, pad: int = 1) -> np.ndarray:
    """``x: (n, C, H, W)`` in [-1, 1] -> one ``(rows*(H+pad)+pad, nrow*(W+pad)+pad, C)``
    array in [0, 1] (white padding), images left to right then top to bottom."""
    a = x.detach().cpu().float().numpy() if hasattr(x, "detach") else np.asarray(x, float)
    a = np.clip((a + 1) / 2, 0, 1).transpose(0, 2, 3, 1)
    n, h, w, c = a.shape
    ncol = max(1, min(nrow, n))
    rows = -(-n // ncol)
    out = np.ones((rows * (h + pad) + pad, ncol * (w + pad) + pad, c))
    for i in range(n):
        top, left = (pad + k * (s + pad) for k, s in zip(divmod(i, ncol), (h, w)))
        out[top: top + h, left: left + w] = a[i]
    return out


def _show(ax, grid: np.ndarray) -> None:
    if grid.shape[-1] == 1:
        ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()


def image_grid(x, nrow: int = 8, title: str = "") -> Figure:
    """A grid of images ``x: (n, C, H, W)`` in [-1, 1] (values outside are clipped),
    ``nrow`` images per row; grayscale when ``C == 1``."""
    grid = tile(x, nrow)
    scale = 6.0 / max(grid.shape[1], 1)
    fig, ax = plt.subplots(figsize=(6.0, max(1.0, grid.shape[0] * scale) + (0.4 if title else 0)))
    _show(ax, grid)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def image_rows(rows: dict, n: int = 8, title: str = "") -> Figure:
    """One labelled row per entry of ``rows: {label: (m, C, H, W) in [-1, 1]}``, showing
    the first ``n`` images of each, e.g. source (t=0) / generated (t=1) / target."""
    fig, axes = plt.subplots(len(rows), 1, figsize=(1.0 * n, 1.15 * len(rows) + 0.4),
                             squeeze=False)
    for ax, (label, x) in zip(axes[:, 0], rows.items()):
        _show(ax, tile(x[:n], n))
        ax.set_title(label, fontsize=9, loc="left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def image_panels(panels: dict, n: int = 36, ncol: int = 6, title: str = "") -> Figure:
    """One labelled grid per entry of ``panels: {label: (m, C, H, W) in [-1, 1]}`` side by
    side (the first ``n`` images of each, ``ncol`` per row), e.g. the samples after IPF
    iteration 1 next to those after the last (seed 003, "DSB 1" / "DSB 8")."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
    for ax, (label, x) in zip(axes[0], panels.items()):
        _show(ax, tile(x[:n], ncol))
        ax.set_title(label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
