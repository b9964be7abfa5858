"""Multimarginal figures (seed 004, slides 40-41): one initial condition sent to every
marginal and to the barycenter, style-transfer paths, and the transport cost of two
paths on the simplex."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sbrun.plots.scatter import _np  # noqa: E402

REFERENCE = "#bbbbbb"


def _colours(x: np.ndarray) -> np.ndarray:
    """One colour per initial point (angle around the cloud's mean), so the same point
    can be followed from panel to panel."""
    c = x - x.mean(0)
    return plt.cm.hsv((np.arctan2(c[:, 1], c[:, 0]) + np.pi) / (2 * np.pi))


def grid_2d(x, moved: dict, refs: dict, title: str = "") -> Figure:
    """Panels: the initial points ``x: (n, 2)``, then ``moved[name]: (n, 2)`` (where the
    flow took them) over held-out draws ``refs[name]`` (grey; absent for the barycenter)."""
    x = _np(x)
    col = _colours(x)
    fig, axes = plt.subplots(1, len(moved) + 1, figsize=(3.2 * (len(moved) + 1), 3.4),
                             sharex=True, sharey=True, squeeze=False)
    axes = axes[0]
    axes[0].scatter(x[:, 0], x[:, 1], s=3, c=col)
    axes[0].set_title("initial condition")
    for ax, (name, pts) in zip(axes[1:], moved.items()):
        if name in refs:
            r = _np(refs[name])
            ax.scatter(r[:, 0], r[:, 1], s=2, c=REFERENCE, alpha=0.5)
        p = _np(pts)
        ax.scatter(p[:, 0], p[:, 1], s=3, c=col)
        ax.set_title(f"-> {name}")
    for ax in axes:
        ax.set_aspect("equal", adjustable="box")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def paths_2d(x, paths: dict, refs: dict, title: str = "") -> Figure:
    """One panel per destination: trajectories ``paths[name]: (n_paths, n_times, 2)`` of
    the same source points ``x: (n, 2)`` (coloured by start) over ``refs[name]``."""
    x = _np(x)
    fig, axes = plt.subplots(1, len(paths), figsize=(3.6 * len(paths), 3.6), sharex=True,
                             sharey=True, squeeze=False)
    for ax, (name, path) in zip(axes[0], paths.items()):
        r = _np(refs[name])
        ax.scatter(x[:, 0], x[:, 1], s=2, c="#1f77b4", alpha=0.3)
        ax.scatter(r[:, 0], r[:, 1], s=2, c=REFERENCE, alpha=0.5)
        p = _np(path)
        col = _colours(p[:, 0])
        for q, c in zip(p, col):
            ax.plot(q[:, 0], q[:, 1], c=c, lw=0.7, alpha=0.8)
        ax.scatter(p[:, -1, 0], p[:, -1, 1], s=6, c=col, edgecolors="k", linewidths=0.2)
        ax.set_title(f"-> {name}")
        ax.set_aspect("equal", adjustable="box")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def grid_images(x, moved: dict, title: str = "") -> Figure:
    """Rows: the initial images ``x: (n, C, H, W)``, then ``moved[name]`` (same columns)."""
    from sbrun.plots.images import image_rows

    rows = {"initial": x, **{f"-> {k}": v for k, v in moved.items()}}
    return image_rows(rows, n=x.shape[0], title=title)


def path_cost_curves(times, alphas: dict, profiles: dict, names: list[str],
                     title: str = "") -> Figure:
    """Left: ``alpha_k(t)`` of each path (``alphas[label]: (n_t, K)``); right: the cost
    integrand ``E|b|^2`` (``profiles[label]: (n_t,)``), with ``int_0^1`` in the legend."""
    t = _np(times)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.8))
    styles = ["--", "-", ":", "-."]
    colours = plt.cm.tab10(np.arange(len(names)) % 10)
    for s, a in zip(styles, alphas.values()):
        a = _np(a)
        for k in range(a.shape[1]):
            ax0.plot(t, a[:, k], ls=s, c=colours[k],
                     label=f"{names[k]}" if s == styles[0] else None)
    ax0.set_xlabel("t")
    ax0.set_ylabel("alpha_k(t)  (dashed: " + ", solid: ".join(alphas) + ")")
    ax0.legend(fontsize=7)
    for s, (label, prof) in zip(styles, profiles.items()):
        p = _np(prof)
        ax1.plot(t, p, ls=s, c="k", label=f"{label}: ∫E|b|² dt = {p.mean():.3g}")
    ax1.set_xlabel("t")
    ax1.set_ylabel("E|b(t, x)|²")
    ax1.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
