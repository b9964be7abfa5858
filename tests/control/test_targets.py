"""Exact targets: the tilted-Gaussian closed form, importance resampling, the energies' samplers."""

import pytest
import torch

from sbrun.control.energies import ENERGIES, make_energy
from sbrun.control.targets import Tilted, tilted_gaussian
from sbrun.data.distributions import StandardGaussian


def test_importance_resampling_matches_the_tilted_gaussian_closed_form():
    base, c, lam = StandardGaussian((2,), std=1.5), torch.tensor([2.0, -1.0]), 0.5
    closed = tilted_gaussian(torch.zeros(2), 2.25 * torch.eye(2), c, lam)
    # S* = (1/2.25 + 2)^-1 I, m* = S* c / lam
    s = 1 / (1 / 2.25 + 1 / lam)
    torch.testing.assert_close(closed.cov, s * torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(closed.mean, s * c.double() / lam)
    tilted = Tilted(base, lambda x: -0.5 * (x - c).pow(2).sum(1) / lam, pool=50)
    x = tilted.sample(20000, torch.Generator().manual_seed(0)).double()
    torch.testing.assert_close(x.mean(0), closed.mean, atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), closed.cov, atol=0.03, rtol=0)
    assert 0 < tilted.ess < 1


@pytest.mark.parametrize("name", ENERGIES)
def test_exact_sampler_agrees_with_the_energy(name):
    """Moments of the exact draws = moments of exp(-E) by importance weighting a wide proposal."""
    energy = make_energy(name)
    g = torch.Generator().manual_seed(0)
    prop = StandardGaussian((2,), std=4.0)
    y = prop.sample(400000, g).double()
    logw = -energy.energy(y) - prop.log_prob(y)
    w = torch.softmax(logw, 0)[:, None]
    x = energy.sample(100000, g).double()
    feats = [lambda z: z, lambda z: z.abs(), lambda z: z.norm(dim=1, keepdim=True)]
    for f in feats:
        torch.testing.assert_close(f(x).mean(0), (w * f(y)).sum(0), atol=0.05, rtol=0.03)
