"""Figures of diffusion models (pure functions: arrays in, ``matplotlib`` Figure out).

* :func:`forward_reverse` — seed 001, "Formulación continua": the forward noising of a
  2D (or 1D) distribution over time above its reverse generation, SDE and ODE rows.
* :func:`ode_sde_paths` — probability-flow ODE and reverse-SDE trajectories side by side.
* :func:`diffusion_as_ot` — seed 000, "Modelos de difusión como OT": the encoder ``E(x)``
  of the probability-flow ODE next to the exact OT (Monge) map of the same points.
* :func:`map_gap_curve` — the mean distance between the two maps against steps.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sbrun.plots.scatter import GENERATED, SOURCE, TARGET, _np  # noqa: E402

ROWS = (("forward noising q(x_s)", TARGET), ("reverse SDE", GENERATED),
        ("probability-flow ODE", SOURCE))


def _panel(ax, pts: np.ndarray, color: str, lim: float | None) -> None:
    """Scatter for 2D points, a histogram for 1D."""
    if pts.shape[1] == 1:
        ax.hist(pts[:, 0], bins=60, color=color, alpha=0.8, density=True)
        if lim is not None:
            ax.set_xlim(-lim, lim)
        return
    ax.scatter(pts[:, 0], pts[:, 1], s=1.5, c=color, alpha=0.5)
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def forward_reverse(s, forward, reverse_sde, reverse_ode=None, title: str = "",
                    lim: float | None = 3.0) -> Figure:
    """Marginals over noising time, one column per ``s`` (data at ``s = 0``, prior at 1).

    Args:
        s: ``(n_times,)`` noising times of the columns.
        forward, reverse_sde, reverse_ode: ``(n_times, n, d)`` points (``d = 1`` or 2) at
            those times: the forward process from data, and the reverse processes from
            the prior (sbrun time ``t = 1 - s`` up to ``s_min``).
    """
    s = _np(s)
    rows = [r for r in (forward, reverse_sde, reverse_ode) if r is not None]
    fig, axes = plt.subplots(len(rows), len(s), figsize=(2.2 * len(s), 2.3 * len(rows)),
                             squeeze=False)
    for r, (pts, (label, color)) in enumerate(zip(rows, ROWS)):
        pts = _np(pts)
        for c in range(len(s)):
            _panel(axes[r, c], pts[c], color, lim)
            if r == 0:
                axes[r, c].set_title(f"s = {s[c]:.2f}  (t = {1 - s[c]:.2f})", fontsize=9)
        axes[r, 0].set_ylabel(label, fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def ode_sde_paths(t, ode_path, sde_path, title: str = "", coord: int = 0) -> Figure:
    """Trajectories of the same prior draws against time: ODE (left), SDE (right).

    ``t: (n_times,)`` sbrun times (prior at 0, data at 1); paths ``(n_paths, n_times, d)``;
    coordinate ``coord`` is drawn against ``t`` (Song et al. 2021, Fig. 2).
    """
    t = _np(t)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True, sharey=True)
    for ax, path, name in zip(axes, (_np(ode_path), _np(sde_path)),
                              ("probability-flow ODE", "reverse SDE")):
        for p in path:
            ax.plot(t, p[:, coord], lw=0.7, alpha=0.6, c="k")
        ax.scatter(np.zeros(len(path)), path[:, 0, coord], s=8, c=SOURCE, zorder=3,
                   label="prior draw (t=0)")
        ax.scatter(np.full(len(path), t[-1]), path[:, -1, coord], s=8, c=GENERATED, zorder=3,
                   label="sample (t=1)")
        ax.set_xlabel("t (prior at 0, data at 1)")
        ax.set_title(name)
        ax.legend(loc="upper left", fontsize=8)
    axes[0].set_ylabel(f"x[{coord}]")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def diffusion_as_ot(x, encoded, monge, title: str = "", n_arrows: int = 150) -> Figure:
    """``E(x)`` (probability-flow encoder) next to the Monge map ``T(x)`` of the same points.

    Args: ``x``, ``encoded``, ``monge``: ``(n, 2)`` data points, ``E(x)``, ``T(x)``.
    """
    x, e, m = _np(x), _np(encoded), _np(monge)
    gap = np.linalg.norm(e - m, axis=1)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.6))
    idx = np.linspace(0, len(x) - 1, min(n_arrows, len(x))).astype(int)
    for ax, y, name in zip(axes[:2], (e, m), ("E(x): probability-flow ODE", "T(x): OT (emd)")):
        ax.scatter(x[:, 0], x[:, 1], s=2, c=TARGET, alpha=0.4, label="data x")
        ax.scatter(y[:, 0], y[:, 1], s=2, c=SOURCE, alpha=0.4, label="image")
        for i in idx:
            ax.plot([x[i, 0], y[i, 0]], [x[i, 1], y[i, 1]], c="k", lw=0.4, alpha=0.5)
        ax.set_title(name)
        ax.set_aspect("equal", adjustable="datalim")
        ax.legend(loc="upper right", fontsize=8, markerscale=4)
    sc = axes[2].scatter(x[:, 0], x[:, 1], s=4, c=gap, cmap="viridis")
    fig.colorbar(sc, ax=axes[2], label="|E(x) - T(x)|")
    axes[2].set_title(f"mean |E(x) - T(x)| = {gap.mean():.3f}")
    axes[2].set_aspect("equal", adjustable="datalim")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def map_gap_curve(xs, gaps: dict[str, list[float]], xlabel: str, title: str = "") -> Figure:
    """``gaps[name][k]``: the mean map distance at ``xs[k]`` (log-scaled x axis)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, ys in gaps.items():
        ax.plot(_np(xs), ys, marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean distance between maps")
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig
