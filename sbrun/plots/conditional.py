"""Figures of class-conditional samples: 2D points coloured by class, one image row per class."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sbrun.plots.images import image_rows  # noqa: E402


def class_samples_2d(generated, labels, target, title: str = "") -> Figure:
    """Held-out target draws (grey) and generated points ``(n, 2)`` coloured by their
    class ``labels: (n,)``, one colour per class."""
    gen, y, tgt = (np.asarray(a.detach().cpu() if hasattr(a, "detach") else a)
                   for a in (generated, labels, target))
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(tgt[:, 0], tgt[:, 1], s=2, c="0.8", label="target (held-out)")
    colours = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7]  # no grey
    for i, c in enumerate(np.unique(y)):
        pts = gen[y == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=3, color=colours[i % 9], label=f"class {c}")
    ax.set_aspect("equal", adjustable="box")
    ax.legend(markerscale=4, fontsize=7, loc="upper right")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def class_rows(images, labels, n: int = 10, title: str = "") -> Figure:
    """One row of (at most) ``n`` generated images ``(m, C, H, W)`` per class in ``labels``."""
    rows = {f"class {c}": images[labels == c][:n] for c in sorted(set(labels.tolist()))}
    return image_rows(rows, n=n, title=title)


def conditional_figures(evaluation, title: str = "") -> dict:
    """``{"classes": Figure}`` for an evaluation with labels; ``{"restoration": Figure}``
    (rows: corrupted, completed, truth) for a paired restoration problem; else ``{}``."""
    if {"mse_unobserved", "mse_lowres"} & set(evaluation.metrics):
        rows = {"corrupted (x0)": evaluation.x0, "completed (t=1)": evaluation.result.x,
                "truth (x1)": evaluation.target}
        return {"restoration": image_rows(rows, n=10, title=title)}
    y = evaluation.labels  # Evaluation.labels: None unless the run is class-conditional
    if y is None:
        return {}
    x = evaluation.result.x
    title = f"{title}, guidance w={evaluation.metrics.get('guidance', 0):g}"
    if x.dim() == 4:
        return {"classes": class_rows(x, y, title=title)}
    if x.shape[1:] == (2,):
        return {"classes": class_samples_2d(x, y, evaluation.target, title)}
    return {}
