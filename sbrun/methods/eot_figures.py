"""eot's extra figures: Sinkhorn convergence (seed 003) and W2 barycenters (seed 000).

Functions of a bound :class:`~sbrun.methods.eot.EOT` (``eot``), kept apart from the method.
"""

from __future__ import annotations

import torch


def barycenter_shapes(problem) -> list:
    """The three 2D shapes of the barycenter figure and metric (the problem's first three
    marginals), or ``[]`` when the problem has no such shapes."""
    marginals = problem.extra.get("marginals") or []
    return list(marginals[:3]) if len(marginals) >= 3 and marginals[0].shape == (2,) else []


def convergence_figure(eot, draw: bool = True):
    """Sinkhorn's marginal error per IPF iteration for each of ``convergence_sigmas``
    (seed 003: geometric convergence); ``(figure or None, {sinkhorn_rate_<k>: rho})``."""
    from sbrun.couplings.convergence import geometric_rate, sinkhorn_trace

    if eot._traces is None:
        from sbrun.data.distributions import StandardGaussian

        g = torch.Generator().manual_seed(eot.plan_seed + 1)
        k = eot.convergence_points
        src = eot.problem.source or StandardGaussian(eot.problem.shape)
        a = eot._draw(src, k, g).double()[:k]
        b = eot._draw(eot.problem.target, k, g).double()[:k]
        eot._traces = [sinkhorn_trace(a.flatten(1), b.flatten(1), s, iters=eot.max_iter)[0]
                       for s in eot.convergence_sigmas]
    rates = {f"sinkhorn_rate_{i}": geometric_rate(e) for i, e in enumerate(eot._traces)}
    if not draw:
        return None, rates
    from sbrun.plots.ot import convergence_curves

    labels = [f"σ={s:g}, ε=σ²={s * s:.3g}: ρ={rates[f'sinkhorn_rate_{i}']:.3f}"
              for i, s in enumerate(eot.convergence_sigmas)]
    title = (f"Sinkhorn / IPF on {eot.problem.name}, {eot.convergence_points} points per side:\n"
             "geometric convergence, err_n ≈ C ρ^n")
    return convergence_curves(eot._traces, labels, title), rates


def barycenter_figure(eot, marginals, n: int = 4, points: int = 300):
    """Free-support W2 barycenters of three 2D shapes over a simplex grid (seed 000's
    "interpolación baricéntrica")."""
    from sbrun.couplings.barycenter import free_support_barycenter, simplex_grid
    from sbrun.plots.ot import barycenter_triangle

    g = torch.Generator().manual_seed(eot.plan_seed)
    clouds = [m.sample(points, g) for m in marginals]
    bary = {tuple(w): free_support_barycenter(clouds, w, n_support=points)
            for w in simplex_grid(3, n)}
    names = [getattr(m, "name", f"shape {k}") for k, m in enumerate(marginals)]
    return barycenter_triangle(bary, n, title="W2 barycenters of " + ", ".join(names))


def barycenter_metrics(eot, marginals, points: int = 300) -> dict[str, float]:
    """How closely the free-support barycenter at weights (1/2, 1/2) of each pair of the
    three shapes is McCann's midpoint: on the W2 geodesic, ``W2(A, B) = W2(B, C) =
    W2(A, C) / 2``. ``barycenter_midpoint_gap`` is the largest
    ``(|W2(A, B) - W2(A, C)/2| + |W2(B, C) - W2(A, C)/2|) / W2(A, C)`` over the pairs
    (0 for the exact midpoint; 1 if the barycenter sat at an end)."""
    from sbrun.couplings.barycenter import free_support_barycenter
    from sbrun.metrics.distances import w2

    g = torch.Generator().manual_seed(eot.plan_seed)
    clouds = [m.sample(points, g) for m in marginals]
    gaps = []
    for i, j in ((0, 1), (1, 2), (0, 2)):
        weights = [0.0, 0.0, 0.0]
        weights[i] = weights[j] = 0.5
        mid = free_support_barycenter(clouds, weights, n_support=points)
        d = w2(clouds[i], clouds[j], max_points=None)
        gaps.append((abs(w2(clouds[i], mid, max_points=None) - d / 2)
                     + abs(w2(mid, clouds[j], max_points=None) - d / 2)) / d)
    return {"barycenter_midpoint_gap": max(gaps)}
