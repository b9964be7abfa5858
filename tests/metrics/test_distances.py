"""W2 between samples and between Gaussians."""

import math

import pytest
import torch

from sbrun.data import Gaussian
from sbrun.errors import ConfigError
from sbrun.metrics.distances import bures_sq, w2, w2_floor, w2_gaussian

F64 = torch.float64


def test_w2_of_identical_samples_is_zero():
    x = torch.randn(300, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert w2(x, x) < 1e-7
    assert w2(x, x[torch.randperm(300)]) < 1e-7


def test_w2_of_a_translation_is_the_shift():
    x = torch.randn(200, 2, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    v = torch.tensor([[0.3, -0.4], [1.0, 0.2]], dtype=F64)
    assert w2(x, x + v) == pytest.approx(float(v.norm()), rel=1e-9)


def test_w2_between_gaussian_samples_approaches_closed_form():
    g0 = Gaussian(torch.zeros(2), torch.tensor([[1.0, 0.2], [0.2, 0.5]]))
    g1 = Gaussian(torch.tensor([2.0, 1.0]), torch.tensor([[0.4, 0.0], [0.0, 2.0]]))
    gen = torch.Generator().manual_seed(2)
    exact = w2_gaussian(g0.mean, g0.cov, g1.mean, g1.cov)
    est = w2(g0.sample(1500, gen), g1.sample(1500, gen))
    floor = w2_floor(g1.sample(1500, gen), g1.sample(1500, gen))
    assert 0 < floor < 0.3
    assert abs(est - exact) < 0.05 * exact


def test_w2_subsampling_is_reproducible():
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(500, 2, generator=gen), torch.randn(400, 2, generator=gen) + 1
    a = w2(x, y, max_points=100, generator=torch.Generator().manual_seed(0))
    b = w2(x, y, max_points=100, generator=torch.Generator().manual_seed(0))
    c = w2(x, y, max_points=100, generator=torch.Generator().manual_seed(1))
    assert a == b and a != c
    with pytest.raises(ConfigError):
        w2(x[:0], y)


def test_w2_gaussian_closed_forms():
    S = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=F64)
    m = torch.tensor([1.0, -2.0], dtype=F64)
    shift = torch.tensor([3.0, 4.0], dtype=F64)
    assert w2_gaussian(m, S, m + shift, S) == pytest.approx(5.0, rel=1e-9)
    # 1-D: sqrt((m0 - m1)^2 + (s0 - s1)^2)
    one = w2_gaussian(torch.zeros(1), torch.tensor([[4.0]]), torch.ones(1), torch.tensor([[9.0]]))
    assert one == pytest.approx(math.sqrt(1 + 1), rel=1e-9)
    # commuting (diagonal): sum (sqrt(a) - sqrt(b))^2
    a, b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.0])
    expected = float((a.sqrt() - b.sqrt()).pow(2).sum())
    assert float(bures_sq(torch.diag(a), torch.diag(b))) == pytest.approx(expected, rel=1e-9)


def test_bures_batched_and_symmetric():
    gen = torch.Generator().manual_seed(4)
    L = torch.randn(5, 3, 3, generator=gen, dtype=F64)
    S0 = L @ L.transpose(1, 2)
    S1 = S0.flip(0)
    d = bures_sq(S0, S1)
    assert d.shape == (5,)
    torch.testing.assert_close(d, bures_sq(S1, S0), atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(bures_sq(S0, S0), torch.zeros(5, dtype=F64), atol=1e-9, rtol=0)
