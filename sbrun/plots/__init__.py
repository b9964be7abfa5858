"""Pure plotting functions: data in, ``matplotlib.figure.Figure`` out."""

from sbrun.plots.scatter import metric_curves, samples_2d, trajectories_2d

__all__ = ["samples_2d", "trajectories_2d", "metric_curves"]
