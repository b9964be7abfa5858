"""Seed 002's before/after figure: the base model, the fine-tuned model, the exact target."""

from __future__ import annotations

import numpy as np
from torch import Tensor


def before_after(base: Tensor, tuned: Tensor, target: Tensor, title: str = ""):
    """Samples (top) and 2D histograms (bottom) of ``base``, ``tuned`` and ``target`` ``(n, 2)``."""
    import matplotlib.pyplot as plt

    sets = {"original model (base)": base, "fine-tuned model": tuned, "exact tilted target": target}
    allx = np.concatenate([v.numpy() for v in sets.values()])
    lo, hi = np.percentile(allx, 0.5, axis=0), np.percentile(allx, 99.5, axis=0)
    pad = 0.1 * (hi - lo)
    lim = [(lo[i] - pad[i], hi[i] + pad[i]) for i in range(2)]
    fig, axes = plt.subplots(2, 3, figsize=(12, 8), sharex=True, sharey=True)
    for j, (name, x) in enumerate(sets.items()):
        x = x.numpy()
        axes[0, j].scatter(x[:, 0], x[:, 1], s=2, alpha=0.4, color=f"C{j}")
        axes[0, j].set_title(f"{name}\nmean |x| = {np.linalg.norm(x, axis=1).mean():.2f}")
        axes[1, j].hist2d(x[:, 0], x[:, 1], bins=80, range=lim, density=True, cmap="viridis")
        for ax in axes[:, j]:
            ax.set_xlim(*lim[0])
            ax.set_ylim(*lim[1])
            ax.set_aspect("equal")
    axes[0, 0].set_ylabel("samples")
    axes[1, 0].set_ylabel("density")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
