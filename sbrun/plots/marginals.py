"""The distribution of a process at several times (seed 003: swiss roll -> S-curve at
t = 0, 0.4, 0.6, 1), one scatter panel per time."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sbrun.plots.scatter import GENERATED, SOURCE, TARGET, _np  # noqa: E402


def nearest_columns(t, times: Sequence[float]) -> list[int]:
    """Indices of the grid times ``t: (n_times,)`` nearest to each requested time."""
    t = _np(t).astype(float)
    return [int(np.abs(t - s).argmin()) for s in times]


def marginals_2d(path, t, times: Sequence[float] = (0.0, 0.4, 0.6, 1.0), source=None,
                 target=None, title: str = "") -> Figure:
    """Scatter of the states ``path: (n, n_times, 2)`` at the grid times nearest ``times``.

    ``t: (n_times,)`` are the path's times (any order, e.g. decreasing for a backward
    process). ``source``/``target`` ``(m, 2)``, when given, are drawn faintly in the
    first/last panel for comparison. Panels share axes; each is titled by its time.
    """
    path, t = _np(path), _np(t).astype(float)
    cols = nearest_columns(t, times)
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 3.4), sharex=True,
                             sharey=True, squeeze=False)
    for i, (ax, c) in enumerate(zip(axes[0], cols)):
        ref = source if t[c] <= 0.5 else target
        if ref is not None and i in (0, len(cols) - 1):
            r = _np(ref)
            ax.scatter(r[:, 0], r[:, 1], s=2, alpha=0.25, c=SOURCE if t[c] <= 0.5 else TARGET)
        ax.scatter(path[:, c, 0], path[:, c, 1], s=2, alpha=0.6, c=GENERATED)
        ax.set_title(f"t = {t[c]:.2f}")
        ax.set_aspect("equal", adjustable="box")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
