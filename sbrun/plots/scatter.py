"""2D figures: source/target/generated scatter, trajectories, metric curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

SOURCE, TARGET, GENERATED = "#1f77b4", "#ff7f0e", "#2ca02c"


def _np(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def samples_2d(source, target, generated, title: str = "") -> Figure:
    """Three panels: source draws, target draws, and where the model sent the source.

    Args: ``(n, 2)`` arrays or tensors.
    """
    source, target, generated = _np(source), _np(target), _np(generated)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharex=True, sharey=True)
    for ax, pts, c, lab in zip(axes, (source, target, generated), (SOURCE, TARGET, GENERATED),
                               ("source (t=0)", "target (t=1)", "generated (t=1)")):
        ax.scatter(pts[:, 0], pts[:, 1], s=2, c=c, alpha=0.6)
        ax.set_title(lab)
        ax.set_aspect("equal", adjustable="box")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def principal_plane(source, target, generated, title: str = "") -> Figure | None:
    """:func:`samples_2d` of vectors in ``d > 2`` projected on the target's two principal
    directions (seed 004's "2D cross section"); ``None`` for ``d <= 2`` or non-vectors.

    Args: ``(n, d)`` tensors.
    """
    import torch

    if generated.dim() != 2 or generated.shape[1] <= 2:
        return None
    tgt = target.detach().double().cpu()
    centre = tgt.mean(0)
    basis = torch.linalg.svd(tgt - centre, full_matrices=False).Vh[:2]

    def proj(x):
        return (x.detach().double().cpu() - centre) @ basis.T

    title = f"{title}, d={generated.shape[1]}: target's principal plane"
    return samples_2d(proj(source), proj(tgt), proj(generated), title)


def side_by_side(panels: dict, title: str = "") -> Figure:
    """One scatter panel per ``{label: (n, 2) points}``, shared axes; the first in the
    target colour (the reference), the others as generated."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), sharex=True,
                             sharey=True, squeeze=False)
    for i, (ax, (label, pts)) in enumerate(zip(axes[0], panels.items())):
        pts = _np(pts)
        ax.scatter(pts[:, 0], pts[:, 1], s=2, c=TARGET if i == 0 else GENERATED, alpha=0.6)
        ax.set_title(label)
        ax.set_aspect("equal", adjustable="box")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def trajectories_2d(path, source, target, title: str = "", times=None) -> Figure:
    """Trajectories ``path: (n_paths, n_times, 2)`` over the source and target clouds."""
    path, source, target = _np(path), _np(source), _np(target)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(source[:, 0], source[:, 1], s=2, c=SOURCE, alpha=0.3, label="source (t=0)")
    ax.scatter(target[:, 0], target[:, 1], s=2, c=TARGET, alpha=0.3, label="target (t=1)")
    for p in path:
        ax.plot(p[:, 0], p[:, 1], c="k", lw=0.6, alpha=0.5)
    ax.scatter(path[:, 0, 0], path[:, 0, 1], s=8, c=SOURCE, edgecolors="k", linewidths=0.3)
    ax.scatter(path[:, -1, 0], path[:, -1, 1], s=8, c=GENERATED, edgecolors="k", linewidths=0.3,
               label="path ends")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="upper right", fontsize=8, markerscale=3)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def metric_curves(history: list[dict], keys=("w2", "kl"), title: str = "", xlabel: str = "step",
                  baselines: dict | None = None) -> Figure:
    """Metric values against the step they were logged at (with the W2 floor dashed).

    ``xlabel``: what the step counts (e.g. ``IPF iteration`` for DSB); ``baselines``:
    ``{metric: (value, label)}`` drawn as dotted horizontal lines (e.g. a score-based
    model's FID next to DSB's).
    """
    keys = [k for k in keys if any(k in h for h in history)]
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4.5 * max(1, len(keys)), 3.5),
                             squeeze=False)
    for ax, k in zip(axes[0], keys):
        pts = [(h["step"], h[k]) for h in history if k in h]
        ax.plot(*zip(*pts), marker="o", label=k)
        floor = [h.get(f"{k}_floor") for h in history if h.get(f"{k}_floor") is not None]
        if floor:
            ax.axhline(floor[-1], ls="--", c="gray", label="sampling floor")
        if baselines and k in baselines:
            value, label = baselines[k]
            ax.axhline(value, ls=":", c="k", label=label)
        if floor or (baselines and k in baselines):
            ax.legend()
        ax.set_xlabel(xlabel)
        ax.set_ylabel(k)
        if xlabel == "IPF iteration":
            ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
