"""multimarginal's figures (seed 004): transports from one marginal to every other one and
to the barycenter, style transfer, and the cost of the straight vs the optimised path.

Functions of a bound :class:`~sbrun.methods.multimarginal.Multimarginal` (``mm``), kept
apart from the method.
"""

from __future__ import annotations

import torch

from sbrun.methods.simplex import LinePath, cost_profile, edge_path, vertex
from sbrun.metrics.pairs import heldout_halves


def figures(mm, nets) -> dict:
    """``grid`` (one initial condition to every marginal and the barycenter),
    ``style_transfer`` (the same source points to every other marginal) and, with
    ``path=optimized``, ``path_cost``."""
    from sbrun.plots import simplex as plots

    dev = next(nets.parameters()).device
    image = len(mm.problem.shape) == 3
    n = 8 if image else mm.figure_points
    start = mm.gaussian_index if mm.gaussian_index is not None else mm.i
    x = heldout_halves(mm.marginals[start], n, 7)[0].to(dev)
    ends = {mm.names[k]: vertex(mm.k, k) for k in range(mm.k) if k != start}
    ends["barycenter"] = mm.barycenter()
    moved = {name: mm.transport_along(nets, x, LinePath(vertex(mm.k, start), a)).x.cpu()
             for name, a in ends.items()}
    refs = {mm.names[k]: mm.marginals[k].heldout(n, 3) for k in range(mm.k) if k != start}
    title = f"multimarginal: from {mm.names[start]} to every marginal and the barycenter"
    figs = {"grid": plots.grid_images(x.cpu(), moved, title) if image
            else plots.grid_2d(x.cpu(), moved, refs, title)}
    src = mm.i if mm.i < mm.n_data else 0
    xs = heldout_halves(mm.marginals[src], n, 11)[0].to(dev)
    keep = None if image else min(64, n)
    runs = {mm.names[k]: mm.transport_along(nets, xs, edge_path(mm.k, src, k), keep=keep)
            for k in range(mm.n_data) if k != src}
    title = f"style transfer: the same {mm.names[src]} points to every other marginal"
    figs["style_transfer"] = (
        plots.grid_images(xs.cpu(), {k: r.x.cpu() for k, r in runs.items()}, title) if image
        else plots.paths_2d(xs.cpu(), {k: r.path for k, r in runs.items()}, refs, title))
    if mm.path == "optimized":
        figs["path_cost"] = cost_figure(mm, nets, dev)
    return figs


def cost_figure(mm, nets, dev):
    """Path weights and cost profile of the straight edge and the optimised path."""
    from sbrun.plots.simplex import path_cost_curves

    times = (torch.arange(64, dtype=torch.float64) + 0.5) / 64
    xs = mm._cost_draws(min(mm.cost_points, 256), dev)
    paths = {"straight edge": edge_path(mm.k, mm.i, mm.j).to(dev),
             "optimized": mm.optimized_path(nets)}
    with torch.no_grad():
        alphas = {k: p(times.to(dev))[0].cpu() for k, p in paths.items()}
        profiles = {k: cost_profile(lambda a, x: mm.g(nets, a, x), p, xs,
                                    times.to(dev)).cpu() for k, p in paths.items()}
    title = f"transport cost {mm.names[mm.i]} -> {mm.names[mm.j]}"
    return path_cost_curves(times, alphas, profiles, mm.names, title)
