"""Optimal-transport figures: plan matrices, couplings between point sets, 1D plans."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sbrun.plots.scatter import SOURCE, TARGET, _np  # noqa: E402


def plan_matrix(plan, order0=None, order1=None, title: str = "") -> Figure:
    """The plan ``(n, m)`` as an image (rows: source points, columns: target points),
    optionally reordered (e.g. by angle) so its structure is visible."""
    p = _np(plan)
    if order0 is not None:
        p = p[_np(order0)]
    if order1 is not None:
        p = p[:, _np(order1)]
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    im = ax.imshow(p / p.max(), cmap="magma_r", interpolation="nearest", aspect="auto")
    ax.set_xlabel("target point j")
    ax.set_ylabel("source point i")
    fig.colorbar(im, ax=ax, label="P_ij / max P")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def coupling_lines(x0, x1, plan, title: str = "", max_lines: int = 300, seed: int = 0) -> Figure:
    """Segments between pairs drawn from the plan (2D point sets).

    ``max_lines`` pairs ``(i, j) ~ P`` are drawn, so line density shows the plan honestly:
    a diffuse (large-sigma) plan looks like the independent coupling, a small-sigma plan
    like a matching.
    """
    x0, x1, p = _np(x0), _np(x1), _np(plan).astype(np.float64)
    rng = np.random.default_rng(seed)
    flat = rng.choice(p.size, size=max_lines, p=(p / p.sum()).ravel())
    ii, jj = np.unravel_index(flat, p.shape)
    fig, ax = plt.subplots(figsize=(5, 5))
    for i, j in zip(ii, jj):
        ax.plot([x0[i, 0], x1[j, 0]], [x0[i, 1], x1[j, 1]], c="k", lw=0.5, alpha=0.35)
    ax.scatter(x0[:, 0], x0[:, 1], s=8, c=SOURCE, label="source (t=0)", zorder=3)
    ax.scatter(x1[:, 0], x1[:, 1], s=8, c=TARGET, label="target (t=1)", zorder=3)
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plan_1d(x0, x1, plan, bins: int = 60, title: str = "") -> Figure:
    """A 1D plan on a grid with the two marginals along its sides (seed 001, Figs. 6–7).

    ``x0: (n,)``, ``x1: (m,)`` support points, ``plan: (n, m)``; masses are binned on a
    common grid so discrete and "continuous discretised" plans read the same way.
    """
    x0, x1, p = _np(x0).ravel(), _np(x1).ravel(), _np(plan)
    lo, hi = min(x0.min(), x1.min()), max(x0.max(), x1.max())
    edges = np.linspace(lo - 1e-9, hi + 1e-9, bins + 1)
    i0, i1 = np.digitize(x0, edges) - 1, np.digitize(x1, edges) - 1
    grid = np.zeros((bins, bins))
    np.add.at(grid, (i0[:, None].repeat(len(x1), 1), i1[None, :].repeat(len(x0), 0)), p)
    a, b = grid.sum(1), grid.sum(0)
    centres = 0.5 * (edges[1:] + edges[:-1])
    fig = plt.figure(figsize=(5.5, 5.5))
    gs = fig.add_gridspec(2, 2, width_ratios=(1, 4), height_ratios=(1, 4), wspace=0.05, hspace=0.05)
    ax_top, ax_left = fig.add_subplot(gs[0, 1]), fig.add_subplot(gs[1, 0])
    ax = fig.add_subplot(gs[1, 1], sharex=ax_top, sharey=ax_left)
    ax_top.bar(centres, b, width=edges[1] - edges[0], color=TARGET)
    ax_left.barh(centres, a, height=edges[1] - edges[0], color=SOURCE)
    ax_left.invert_xaxis()
    ax.imshow(grid, origin="lower", cmap="magma_r", extent=(edges[0], edges[-1], edges[0], edges[-1]),
              aspect="auto", interpolation="nearest")
    ax_top.set_title(title or "transport plan", fontsize=10)
    ax.set_xlabel("target x1")
    ax_left.set_ylabel("source x0")
    for a_ in (ax_top, ax_left):
        a_.tick_params(labelbottom=False, labelleft=False)
    return fig


def barycenter_triangle(clouds: dict, n: int, title: str = "") -> Figure:
    """Barycenters laid out on the simplex: ``clouds`` maps weights ``(w0, w1, w2)`` to a
    ``(m, 2)`` cloud; corner ``k`` is shape ``k``, ``n`` steps per edge (seed 000)."""
    fig, axes = plt.subplots(n + 1, n + 1, figsize=(2.1 * (n + 1), 2.1 * (n + 1)))
    for ax in axes.flat:
        ax.axis("off")
    cmap = plt.get_cmap("plasma")
    for w, pts in clouds.items():
        i, j = int(round(w[0] * n)), int(round(w[1] * n))
        ax = axes[n - i, j]  # row: less of shape 0 going down; column: more of shape 1
        pts = _np(pts)
        ax.scatter(pts[:, 0], pts[:, 1], s=1.5, color=cmap(0.85 * w[1] + 0.4 * w[2]))
        ax.set_title(f"({w[0]:.2f}, {w[1]:.2f}, {w[2]:.2f})", fontsize=7)
        ax.set_aspect("equal", adjustable="datalim")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def convergence_curves(errors: list[list[float]], labels: list[str], title: str = "") -> Figure:
    """Marginal error against the Sinkhorn (IPF) iteration, log scale, one curve per run."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for err, label in zip(errors, labels):
        ax.semilogy(np.arange(1, len(err) + 1), np.maximum(err, 1e-16), label=label)
    ax.set_xlabel("Sinkhorn / IPF iteration")
    ax.set_ylabel("marginal error |P1 − a|₁ + |Pᵀ1 − b|₁")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
