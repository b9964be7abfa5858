"""Conditional laws of a stochastic coupling in 2D: where a few source points go."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sbrun.plots.scatter import _np  # noqa: E402

COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown")


def conditionals_2d(x0, x1, paths, target, title: str = "", n_paths: int = 12) -> Figure:
    """Two panels: sample paths from each source point, and its conditional draws.

    Args:
        x0: ``(m, 2)`` source points; x1: ``(m, k, 2)`` draws of ``x1 | x0``;
        paths: ``(m, k, n_times, 2)`` the paths that produced them (``n_paths`` drawn);
        target: ``(n, 2)`` target draws (grey background).
    """
    x0, x1, paths, target = _np(x0), _np(x1), _np(paths), _np(target)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2), sharex=True, sharey=True)
    for ax in axes:
        ax.scatter(target[:, 0], target[:, 1], s=2, c="0.6", alpha=0.2)
    for i in range(x0.shape[0]):
        c = COLOURS[i % len(COLOURS)]
        for p in paths[i, :n_paths]:
            axes[0].plot(p[:, 0], p[:, 1], c=c, lw=0.6, alpha=0.6)
        axes[1].scatter(x1[i, :, 0], x1[i, :, 1], s=4, c=c, alpha=0.5)
        for ax in axes:
            ax.scatter(x0[i, 0], x0[i, 1], s=80, c=c, marker="*", edgecolors="k", linewidths=0.6)
    axes[0].set_title(f"paths ({n_paths} per source point ★)")
    axes[1].set_title(f"x1 | x0: {x1.shape[1]} draws per source point ★")
    for ax in axes:
        ax.set_aspect("equal", adjustable="box")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
