"""Base chains: the memoryless chain of a flow model keeps its marginals and forgets X_0."""

import torch
from torch import nn

from sbrun.control import estimators as est
from sbrun.control.chains import BrownianChain, MemorylessFlowChain

M, S = torch.tensor([1.0, -0.5]), 0.5


class GaussianVelocity(nn.Module):
    """Exact ``v(t, x) = E[x1 - x0 | x_t = x]`` of ``x_t = t x1 + (1 - t) x0``,
    ``x1 ~ N(M, S^2 I)``, ``x0 ~ N(0, I)`` (Gaussian conditioning)."""

    def forward(self, x, t):
        t = t[:, None].to(x.dtype)
        var = t**2 * S**2 + (1 - t) ** 2
        r = x - t * M.to(x)
        return M.to(x) + (t * S**2 - (1 - t)) / var * r


def test_memoryless_flow_chain_has_the_flow_marginal_and_forgets_x0():
    """Plugging ``x1_hat`` into the Gaussian steps under-disperses by O(h) (std 0.43 at N = 20,
    0.465 at 50, 0.486 at 100, 0.495 at 200 for S = 0.5), like DDPM's ancestral sampler."""
    chain = MemorylessFlowChain((2,), 200, GaussianVelocity())
    x0 = chain.prior.sample(20000, torch.Generator().manual_seed(0)).double()
    ro = est.rollout(chain, None, x0, lambda x: x.sum(1), torch.Generator().manual_seed(1))
    x1 = ro.xs[-1]
    torch.testing.assert_close(x1.mean(0), M.double(), atol=0.02, rtol=0)
    torch.testing.assert_close(x1.std(0), torch.full((2,), S, dtype=torch.float64), atol=0.02, rtol=0)
    corr = ((x0 - x0.mean(0)) * (x1 - x1.mean(0))).mean(0) / (x0.std(0) * x1.std(0))
    assert corr.abs().max() < 0.02  # X_1 independent of X_0: the tilt is exact
    mid = ro.xs[100]  # t = 0.5: the flow's marginal N(t M, t^2 S^2 + (1 - t)^2)
    torch.testing.assert_close(mid.mean(0), 0.5 * M.double(), atol=0.02, rtol=0)
    torch.testing.assert_close(mid.var(0), torch.full((2,), 0.25 * S**2 + 0.25, dtype=torch.float64),
                               atol=0.02, rtol=0)


def test_memoryless_noise_matches_the_sde_schedule():
    """``s_k^2 / h -> 2 (1 - t) / t`` (Domingo-Enrich et al. 2024's memoryless sigma(t)^2)."""
    chain = MemorylessFlowChain((2,), 10000, GaussianVelocity())
    for k in (2000, 5000, 8000):
        t = float(chain.times[k])
        assert abs(chain.g(k) ** 2 / (2 * (1 - t) / t) - 1) < 0.01


def test_brownian_chain_from_the_origin():
    chain = BrownianChain((2,), 10, 0.7)
    x = est.rollout(chain, None, chain.prior.sample(40000), lambda x: x.sum(1),
                    torch.Generator().manual_seed(0), keep=False).xs[-1]
    torch.testing.assert_close(x.std(0), torch.full((2,), 0.7), atol=0.01, rtol=0)
    assert chain.terminal().std == 0.7
