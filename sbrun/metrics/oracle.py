"""Closed-form ground truth for Gaussian-to-Gaussian problems.

When both marginals are Gaussian the Schrödinger bridge of the reference
``dX = sigma dW`` is known in closed form (Bunne et al. 2023; Janati et al. 2020).
Every method that claims a bridge (``Method.bridge_sigma()`` not ``None``; a
``Method.stochastic`` one with ``repeats`` draws per point) is scored against it: the
conditional BW2-UVP of its coupling (cB-W2-UVP, Gushchin et al. 2023) and the BW2-UVP
of its joint plan, both in %.
"""

from __future__ import annotations

import torch


class GaussianOracle:
    """Scores a run against the closed-form SB between ``g0`` (source) and ``g1`` (target).

    Args:
        g0, g1: full :class:`~sbrun.data.gaussians.Gaussian` s, ``mean (d,)``, ``cov (d, d)``
            (a :class:`~sbrun.data.truth.GaussianPair`; :func:`sbrun.metrics.truth.scorer_for`).
        n: source points scored; ``repeats``: draws per source point for stochastic
            methods (the conditional law needs several).
    """

    def __init__(self, g0, g1, n: int = 500, repeats: int = 16):
        self.g0, self.g1, self.n, self.repeats = g0, g1, n, repeats

    @torch.no_grad()
    def score(self, method, nets, evaluator, samples=None) -> dict[str, float]:
        """``cbw2_uvp``, ``plan_bw2_uvp`` and ``oracle_sigma`` of the bridge ``method``
        claims, from its own ``repeats`` draws per point (``samples``, the evaluation's
        single draws, are not used)."""
        from sbrun.metrics.gaussian import cbw2_uvp, plan_error

        sigma = method.bridge_sigma()
        if sigma is None or method.generative_only or evaluator.data.problem.generative:
            return {}
        x0 = evaluator.source[: self.n]
        k = self.repeats if method.stochastic else 1
        x0r = x0.repeat_interleave(k, 0).to(evaluator.device)
        g = torch.Generator().manual_seed(evaluator.seed + 2)
        res = method.transport(nets, x0r, evaluator.solver, evaluator.grid, generator=g)
        x1 = res.x.detach().cpu().double().reshape(x0.shape[0], k, -1)
        g0, g1 = self.g0, self.g1
        x0d = x0.double().reshape(x0.shape[0], -1)
        return {
            "cbw2_uvp": cbw2_uvp(x0d, x1, g0, g1, sigma),
            "plan_bw2_uvp": plan_error(x0d, x1[:, 0], g0, g1, sigma),
            "oracle_sigma": sigma,
        }
