"""Figures of diffusion models (pure functions: arrays in, ``matplotlib`` Figure out).

* :func:`forward_reverse` — seed 001, "Formulación continua": the forward noising of a
  2D (or 1D) distribution over time above its reverse generation, SDE and ODE rows.
* :func:`ode_sde_paths` — probability-flow ODE and reverse-SDE trajectories side by side.
* :func:`diffusion_as_ot` — seed 000, "Modelos de difusión como OT": the encoder ``E(x)``
  of the probability-flow ODE next to the exact OT (Monge) map of the same points.
* :func:`map_gap_curve` — the mean distance between the two maps against steps.
* :func:`ve_vs_vp` — seed 001: the same data noised by the VE and the VP SDE (exact
  marginals), a few forward paths of each and their marginal stds against time.
* :func:`nll_solvers` — the exact NLL by the probability-flow ODE per solver, with its NFE.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402

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


SDE_COLORS = ("#d62728", "#1f77b4", "#9467bd", "#8c564b")


def _ve_vp_scatter(fig, gs, s, clouds: dict) -> None:
    """One row of scatter panels per SDE; a column's panels share their (square) limits."""
    n_times = len(s)
    for c in range(n_times):
        pts = [_np(v)[c] for v in clouds.values()]
        lim = max(2.5, 1.1 * max(float(np.percentile(np.abs(p), 99.5)) for p in pts))
        for r, (label, p) in enumerate(zip(clouds, pts)):
            ax = fig.add_subplot(gs[r, c])
            ax.scatter(p[:, 0], p[:, 1], s=1.2, c=SDE_COLORS[r], alpha=0.4)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=7)
            std = float(np.sqrt(p.var(0).mean()))
            ax.set_title(f"s = {s[c]:.2f}, std {std:.2f}", fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)


def ve_vs_vp(s, clouds: dict, paths: dict, curves: dict, title: str = "") -> Figure:
    """The same data noised by several SDEs (VE, VP): scatter rows, paths, marginal stds.

    Args:
        s: ``(n_times,)`` noising times of the scatter columns (data at ``s = 0``).
        clouds: ``{label: (n_times, n, 2)}`` draws of each SDE's marginal at those times.
        paths: ``{label: (s_grid (m,), (n_paths, m, d))}`` forward paths (``x[0]`` drawn).
        curves: ``{label: (s_grid (k,), alpha (k,), noise std (k,), marginal std (k,))}``
            closed forms: ``alpha_s``, ``sigma_s`` and the per-coordinate std of ``X_s``.
    """
    s = _np(s)
    fig = plt.figure(figsize=(2.3 * len(s) + 5.5, 2.5 * max(2, len(clouds)) + 0.6))
    gs = fig.add_gridspec(max(2, len(clouds)), len(s) + 1, width_ratios=[1] * len(s) + [2.4])
    _ve_vp_scatter(fig, gs, s, clouds)
    ax_p, ax_s = fig.add_subplot(gs[0, -1]), fig.add_subplot(gs[1, -1])
    for k, (label, (grid, path)) in enumerate(paths.items()):
        grid, path = _np(grid), _np(path)
        for j, p in enumerate(path):
            ax_p.plot(grid, p[:, 0], c=SDE_COLORS[k], lw=0.7, alpha=0.7,
                      label=label.split(":")[0] if j == 0 else None)
    ax_p.set_title("forward paths x[0] against s", fontsize=9)
    ax_p.legend(fontsize=7, loc="upper left")
    for k, (label, (grid, alpha, noise, total)) in enumerate(curves.items()):
        name = label.split(":")[0]
        ax_s.plot(_np(grid), _np(total), c=SDE_COLORS[k], label=f"{name}: std of X_s")
        ax_s.plot(_np(grid), _np(noise), c=SDE_COLORS[k], ls="--", label=f"{name}: sigma_s")
        ax_s.plot(_np(grid), _np(alpha), c=SDE_COLORS[k], ls=":", label=f"{name}: alpha_s")
        emp = [float(np.sqrt(c.var(0).mean())) for c in _np(clouds[label])] if label in clouds \
            else []
        if emp:
            ax_s.scatter(s, emp, c=SDE_COLORS[k], s=14, zorder=3)
    ax_s.set_yscale("log")
    ax_s.set_ylim(top=ax_s.get_ylim()[1] * 10)  # room for the legend above the curves
    ax_s.set_xlabel("noising time s (data at 0, prior at 1)", fontsize=8)
    ax_s.set_title("X_s = alpha_s x0 + sigma_s z (lines: closed form; dots: the clouds)",
                   fontsize=9)
    ax_s.legend(fontsize=6.5, loc="upper left", ncol=2)
    for ax in (ax_p, ax_s):
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def nll_solvers(rows: list[dict], title: str = "") -> Figure:
    """NLL against NFE per likelihood solver (left) and the table (right).

    ``rows``: dicts with ``solver`` (label), ``scheme``, ``nll``, ``dnll`` (against the
    reference setting), ``nfe`` and ``seconds``; fixed-step rows of one scheme are joined.
    """
    fig, (ax, ax_t) = plt.subplots(1, 2, figsize=(13, 4.6), width_ratios=[1, 1.15])
    for k, scheme in enumerate(dict.fromkeys(r["scheme"] for r in rows)):
        rs = sorted((r for r in rows if r["scheme"] == scheme), key=lambda r: r["nfe"])
        ax.plot([r["nfe"] for r in rs], [r["nll"] for r in rs], marker="o", label=scheme,
                c=f"C{k}")
        for r in rs:
            ax.annotate(r["solver"].split(":", 1)[1], (r["nfe"], r["nll"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    ref = [r for r in rows if r["dnll"] == 0.0]
    if ref:
        ax.axhline(ref[0]["nll"], c="k", ls=":", lw=0.8, label=f"reference {ref[0]['solver']}")
    ax.set_xscale("log")
    ax.set_xticks(sorted({r["nfe"] for r in rows}))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_title("labels: steps (euler, heun, rk4) or rtol = atol (dopri5)", fontsize=9)
    ax.set_xlabel("NFE (velocity + divergence evaluations)")
    ax.set_ylabel("NLL (nats per point)")
    ax.legend(fontsize=8)
    ax_t.axis("off")
    cells = [[r["solver"], f"{r['nll']:.4f}", f"{r['dnll']:+.4f}", str(r["nfe"]),
              f"{r['seconds']:.1f}"] for r in rows]
    table = ax_t.table(cells, colLabels=["solver", "NLL (nats)", "NLL - ref", "NFE", "seconds"],
                       loc="center", cellLoc="right")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.25)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
