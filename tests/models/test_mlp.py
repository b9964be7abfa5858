"""The time-conditioned MLP: shapes for any dimension, conditioning and output heads."""

import pytest
import torch

from sbrun.errors import ConfigError
from sbrun.models import MLP


@pytest.mark.parametrize("shape", [(2,), (7,), (1, 4, 4)])
@pytest.mark.parametrize("emb", ["sinusoidal", "raw"])
def test_output_shape_matches_input(shape, emb):
    net = MLP(shape, hidden=16, depth=2, time_embedding=emb)
    x = torch.randn(5, *shape)
    assert net(x, torch.rand(5)).shape == x.shape


def test_conditioning_vector_and_heads():
    net = MLP((3,), hidden=16, depth=1, cond_dim=4, out_mult=2)
    out = net(torch.randn(6, 3), torch.rand(6, 4))
    assert out.shape == (6, 2, 3)


def test_time_changes_the_output():
    torch.manual_seed(0)
    net = MLP((2,), hidden=32, depth=2)
    x = torch.randn(4, 2)
    assert not torch.allclose(net(x, torch.zeros(4)), net(x, torch.ones(4)))


def test_bad_activation():
    with pytest.raises(ConfigError, match="activation"):
        MLP((2,), activation="nope")
