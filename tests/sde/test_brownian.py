"""Brownian reference: marginals and bridges against their closed forms."""

import pytest
import torch

from sbrun.errors import ConfigError
from sbrun.sde import Brownian


@pytest.mark.parametrize("sigma", [0.1, 1.0, 2.5])
def test_bridge_moments_match_closed_form(sigma):
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x0 = torch.tensor([[1.0, -2.0]], dtype=torch.float64).expand(n, 2)
    x1 = torch.tensor([[3.0, 0.5]], dtype=torch.float64).expand(n, 2)
    sde = Brownian(sigma)
    for t in (0.1, 0.5, 0.8):
        xs = sde.bridge(torch.full((n,), t, dtype=torch.float64), x0, x1).sample(generator=g)
        mean = (1 - t) * x0[0] + t * x1[0]
        var = sigma**2 * t * (1 - t)
        torch.testing.assert_close(xs.mean(0), mean, atol=4 * (var / n) ** 0.5 + 1e-9, rtol=0)
        torch.testing.assert_close(xs.var(0), torch.full((2,), var, dtype=torch.float64),
                                   rtol=0.02, atol=0)


def test_bridge_equals_conditioned_brownian_motion():
    """Simulate W on a grid, condition on the end point by regression: the bridge law."""
    g = torch.Generator().manual_seed(1)
    sigma, n, t = 0.7, 400_000, 0.3
    w_t = sigma * t**0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    w_1 = w_t + sigma * (1 - t) ** 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    # E[W_t | W_1] = t W_1 and Var = sigma^2 t (1 - t): check by least squares
    slope = (w_t * w_1).mean() / (w_1 * w_1).mean()
    resid = w_t - slope * w_1
    assert abs(slope - t) < 0.01
    assert abs(resid.var() - sigma**2 * t * (1 - t)) < 0.01 * sigma**2
    sde = Brownian(sigma)
    b = sde.bridge(torch.full((1,), t), torch.zeros(1, 1), torch.ones(1, 1))
    assert abs(b.mean.item() - t) < 1e-7 and abs(b.std.item() ** 2 - sigma**2 * t * (1 - t)) < 1e-6


def test_marginal_and_bridge_drift():
    sde = Brownian(0.5)
    x0 = torch.randn(4, 3)
    m = sde.marginal(torch.full((4,), 0.25), x0)
    torch.testing.assert_close(m.mean, x0)
    torch.testing.assert_close(m.std.flatten(), torch.full((4,), 0.25))
    x, x1 = torch.zeros(4, 3), torch.ones(4, 3)
    torch.testing.assert_close(sde.bridge_drift(torch.full((4,), 0.5), x, x1), 2 * x1)


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_sigma_must_be_positive(bad):
    with pytest.raises(ConfigError, match="sde.sigma must be > 0"):
        Brownian(bad)


def test_bridge_path_has_bridge_marginals_and_pins():
    sigma, n = 0.6, 200_000
    sde = Brownian(sigma)
    x0 = torch.zeros(n, 1, dtype=torch.float64)
    x1 = torch.full((n, 1), 2.0, dtype=torch.float64)
    grid = torch.linspace(0, 1, 6, dtype=torch.float64)
    path = sde.bridge_path(x0, x1, grid, torch.Generator().manual_seed(0))
    assert path.shape == (n, 6, 1)
    torch.testing.assert_close(path[:, 0], x0)
    torch.testing.assert_close(path[:, -1], x1)
    for k, t in enumerate(grid.tolist()[1:-1], start=1):
        assert abs(path[:, k].mean().item() - 2 * t) < 0.01
        assert abs(path[:, k].var().item() - sigma**2 * t * (1 - t)) < 0.01 * sigma**2
    # Markov increments: Cov(X_s, X_t) = sigma^2 s (1 - t) for s < t
    cov = ((path[:, 1] - path[:, 1].mean()) * (path[:, 3] - path[:, 3].mean())).mean()
    assert abs(cov.item() - sigma**2 * 0.2 * (1 - 0.6)) < 0.005
