"""Flow matching against closed forms: the Gaussian-to-Gaussian marginal velocity."""

import pytest
import torch
from torch import nn

from sbrun.data.distributions import Problem, StandardGaussian
from sbrun.errors import ConfigError
from sbrun.methods.base import Batch, Phase
from sbrun.methods.flow_matching import FlowMatching
from sbrun.sde import Brownian
from sbrun.solvers import get_solver, time_grid

M, S = 2.0, 0.5  # target N(M, S^2 I), source N(0, I), independent coupling


class OracleVelocity(nn.Module):
    """E[x1 - x0 | x_t = x] for x_t = (1-t) x0 + t x1, x0 ~ N(0,1), x1 ~ N(M, S^2)."""

    def forward(self, x, t):
        t = t.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        var = (1 - t) ** 2 + t**2 * S**2
        cov = t * S**2 - (1 - t)
        return M + cov / var * (x - t * M)


def test_oracle_velocity_transports_source_to_target():
    fm = FlowMatching()
    nets = nn.ModuleDict({"net": OracleVelocity()})
    x0 = torch.randn(100_000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = fm.transport(nets, x0, get_solver("euler"), time_grid(400).double())
    torch.testing.assert_close(res.x.mean(0), torch.full((2,), M, dtype=torch.float64),
                               atol=0.02, rtol=0)
    torch.testing.assert_close(res.x.std(0), torch.full((2,), S, dtype=torch.float64),
                               atol=0.01, rtol=0)


def test_loss_is_minimised_by_the_oracle():
    fm = FlowMatching()
    fm.bind(Problem("g", StandardGaussian((2,))), Brownian(1.0))
    g = torch.Generator().manual_seed(1)
    n = 200_000
    x0 = torch.randn(n, 2, generator=g, dtype=torch.float64)
    x1 = M + S * torch.randn(n, 2, generator=g, dtype=torch.float64)

    def loss_of(net):
        gen = torch.Generator().manual_seed(2)
        return fm.loss(nn.ModuleDict({"net": net}), Batch(x0, x1, gen), Phase("train", 1)).loss

    class Shifted(OracleVelocity):
        def forward(self, x, t):
            return super().forward(x, t) + 0.1

    best, worse = loss_of(OracleVelocity()), loss_of(Shifted())
    # the oracle is the L2 projection: perturbing by c adds exactly |c|^2 per dim
    assert worse.item() == pytest.approx(best.item() + 2 * 0.1**2, rel=0.02)


def test_sigma_path_has_brownian_bridge_marginals():
    """SB-CFM path: x_t ~ N((1-t) x0 + t x1, sigma^2 t(1-t)) and its target velocity."""
    sigma = 0.7
    fm = FlowMatching(sigma=sigma)
    seen = {}

    class Spy(nn.Module):
        def forward(self, x, t):
            seen["x"], seen["t"] = x, t
            return torch.zeros_like(x)

    n = 100_000
    x0 = torch.zeros(n, 1, dtype=torch.float64)
    x1 = torch.ones(n, 1, dtype=torch.float64)
    fm.loss(nn.ModuleDict({"net": Spy()}), Batch(x0, x1, torch.Generator().manual_seed(3)),
            Phase("train", 1))
    t, x = seen["t"].double(), seen["x"][:, 0]
    resid = (x - t) / (sigma * (t * (1 - t)).sqrt())
    assert abs(resid.mean().item()) < 0.02 and abs(resid.std().item() - 1) < 0.02


def test_bad_options():
    with pytest.raises(ConfigError, match="coupling"):
        FlowMatching(coupling="nope")
    with pytest.raises(ConfigError, match="sigma"):
        FlowMatching(sigma=-1)
