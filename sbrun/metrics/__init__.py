"""Evaluation metrics: sample distances (W2), Gaussian benchmark scores, FID, KL.

Submodules are imported on demand (``from sbrun.metrics.distances import w2``) so that
importing :mod:`sbrun.metrics` stays cheap.
"""
