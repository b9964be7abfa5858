"""Ground truth of the entropic-OT benchmark (``data=eot_benchmark``): cB-W2-UVP.

The sibling of :class:`sbrun.metrics.oracle.GaussianOracle` for a problem whose
conditional plan ``pi(y | x)`` is a known Gaussian mixture
(:class:`sbrun.data.eot_benchmark.ConditionalGMMPlan`). Like the benchmark (Gushchin et
al. 2023), each held-out source point's ``k`` model draws are fitted by a Gaussian and
compared in Bures-Wasserstein with the true conditional's mean and covariance, in % of the
target's total variance (:func:`sbrun.metrics.gaussian.conditional_bw2_uvp`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class BenchmarkOracle:
    """Scores a run's conditionals ``x1 | x0`` against the benchmark's known plan.

    Args:
        plan: the true conditional plan; n: held-out source points scored;
        repeats: draws per point for stochastic methods (the finite-``k`` floor is reported
            as ``cbw2_uvp_floor``: the score of the true sampler with the same ``n``, ``k``);
        var_samples: source draws behind the target's total variance (Monte Carlo over
            ``x`` of the exact conditional moments, fixed seed).
    """

    def __init__(self, plan, n: int = 100, repeats: int = 1000, seed: int = 0,
                 var_samples: int = 20_000):
        self.plan, self.n, self.repeats, self.seed = plan, int(n), int(repeats), int(seed)
        self.var_samples = int(var_samples)
        self._var: float | None = None
        self._floor: dict[tuple, float] = {}

    def total_var(self) -> float:
        """``tr Cov(Y)`` of the target (cached; the source is ``N(0, I)``)."""
        if self._var is None:
            g = torch.Generator().manual_seed(self.seed + 31)
            x = torch.randn(self.var_samples, self.plan.dim, generator=g, dtype=torch.float64)
            self._var = self.plan.total_variance(x)
        return self._var

    def cbw2_uvp(self, x0: Tensor, x1: Tensor) -> float:
        """``x0: (n, D)`` and model draws ``x1: (n, k, D)`` (or ``(n, D)``) -> cB-W2-UVP in %."""
        from sbrun.metrics.gaussian import conditional_bw2_uvp

        mean, cov = self.plan.moments(x0.reshape(x0.shape[0], -1))
        return conditional_bw2_uvp(x1, mean, cov, self.total_var())

    def cbw2_uvp_of(self, draw, x0: Tensor, k: int) -> float:
        """cB-W2-UVP of ``k`` draws per point of ``x0: (n, D)`` from ``draw(x, k) -> (m, k,
        D)``, reduced to moments a few points at a time (``k`` may be 10^4 and more)."""
        from sbrun.metrics.gaussian import moments_bw2_uvp, streamed_moments

        x0 = x0.reshape(x0.shape[0], -1)
        mu, cov = streamed_moments(draw, x0, k)
        mean, cov_true = self.plan.moments(x0)
        return moments_bw2_uvp(mu, cov, mean, cov_true, self.total_var())

    def floor(self, x0: Tensor, k: int) -> float:
        """The score of the true conditional sampler with ``k`` draws per point of ``x0``."""
        key = (x0.shape[0], k)
        if key not in self._floor:
            g = torch.Generator().manual_seed(self.seed + 7)
            self._floor[key] = self.cbw2_uvp_of(
                lambda x, kk: self.plan.sample_repeated(x, kk, g), x0.double(), k)
        return self._floor[key]

    @torch.no_grad()
    def score(self, method, nets, evaluator, samples=None) -> dict[str, float]:
        """``cbw2_uvp`` (and its floor) of the method's conditionals on held-out points,
        from its own ``repeats`` draws per point (``samples`` are not used)."""
        sigma = method.bridge_sigma()  # the bridge the method claims (Method.bridge_sigma)
        if sigma is None or not math.isclose(sigma**2, self.plan.eps, rel_tol=1e-6):
            return {}  # the method bridges another reference: no ground truth for it
        x0 = evaluator.source[: self.n].reshape(-1, self.plan.dim)
        k = self.repeats if method.stochastic or method.diffusion("forward") is not None else 1
        g = torch.Generator().manual_seed(evaluator.seed + 2)

        def draw(x: Tensor, kk: int) -> Tensor:
            res = method.transport(nets, x.repeat_interleave(kk, 0).to(evaluator.device),
                                   evaluator.solver, evaluator.grid, generator=g)
            return res.x.detach().cpu().double().reshape(x.shape[0], kk, -1)

        return {"cbw2_uvp": self.cbw2_uvp_of(draw, x0, k), "cbw2_uvp_floor": self.floor(x0, k),
                "cbw2_uvp_repeats": float(k), "oracle_sigma": float(sigma)}
