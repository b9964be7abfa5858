"""The UNet: output shapes for MNIST- and CIFAR-like images, padding, heads, conditioning."""

import pytest
import torch

from sbrun.errors import ConfigError
from sbrun.models import UNet

SMALL = dict(hidden=8, channel_mult=(1, 2, 2), heads=2, time_dim=16)



def _randomise_output(net: UNet) -> None:
    """The output conv and every residual branch start at zero (so the untrained net is 0
    and time-independent); perturb all weights so the outputs depend on x and t."""
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))


@pytest.mark.parametrize("shape, mult", [((1, 28, 28), (1, 2, 2)), ((3, 32, 32), (1, 2, 2, 2)),
                                         ((1, 28, 28), (1, 2, 2, 2)), ((3, 20, 30), (1, 2))])
def test_output_shape(shape, mult):
    net = UNet(shape, **{**SMALL, "channel_mult": mult}, attention=[1])
    x = torch.randn(3, *shape)
    assert net(x, torch.rand(3)).shape == x.shape


def test_untrained_net_outputs_zero_and_gradients_reach_the_output():
    net = UNet((1, 28, 28), **SMALL)
    x = torch.randn(2, 1, 28, 28)
    out = net(x, torch.rand(2))
    assert torch.equal(out, torch.zeros_like(out))
    out.sum().backward()
    assert net.conv_out.weight.grad.abs().sum() > 0


def test_time_and_conditioning_change_the_output():
    torch.manual_seed(0)
    net = UNet((1, 28, 28), **SMALL)
    _randomise_output(net)
    x = torch.randn(2, 1, 28, 28)
    assert not torch.allclose(net(x, torch.zeros(2)), net(x, torch.ones(2)))
    cnet = UNet((3, 16, 16), **SMALL, cond_dim=3, out_mult=2)
    _randomise_output(cnet)
    alpha = torch.softmax(torch.randn(4, 3), 1)  # points of the simplex
    y = torch.randn(4, 3, 16, 16)
    out = cnet(y, alpha)
    assert out.shape == (4, 2, 3, 16, 16)
    assert not torch.allclose(out, cnet(y, alpha.flip(1)))


def test_samples_do_not_interact():
    torch.manual_seed(0)
    net = UNet((1, 28, 28), **SMALL, attention=[2]).eval()
    _randomise_output(net)
    x, t = torch.randn(3, 1, 28, 28), torch.rand(3)
    torch.testing.assert_close(net(x, t)[:1], net(x[:1], t[:1]), atol=1e-5, rtol=1e-4)


def test_bad_configs_are_clear_errors():
    with pytest.raises(ConfigError, match="image data"):
        UNet((2,))
    with pytest.raises(ConfigError, match="attention levels"):
        UNet((1, 28, 28), attention=[3])
