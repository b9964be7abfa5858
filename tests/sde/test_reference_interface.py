"""One interface for every reference (issue 13): ``transition(r0, r1)`` in the run time
``r`` (0 at the end the reference starts from), against each reference's closed-form
marginal and bridge, for Brownian and the noising SDEs alike."""

import pytest
import torch

from sbrun.sde import SDES, Brownian, BrownianNoising

REFS = {"brownian": lambda: Brownian(0.7), "vp": lambda: SDES["vp"](s_min=0.0),
        "subvp": lambda: SDES["subvp"](s_min=0.0), "ve": lambda: SDES["ve"](s_min=0.0)}
R = torch.tensor([0.1, 0.3, 0.55, 0.8], dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(REFS))
def test_transition_from_the_start_is_the_marginal(name):
    sde = REFS[name]()
    scale, std = sde.transition(torch.zeros_like(R), R)
    x0 = torch.full((len(R), 1), 1.3, dtype=torch.float64)
    m = sde.marginal(R, x0)  # at s_min = 0 run time and noising time coincide
    torch.testing.assert_close(scale * 1.3, m.mean[:, 0])
    if name == "ve":  # VE's marginal std is sqrt(sigma(s)^2 - sigma_min^2): 0 at the data
        torch.testing.assert_close(std, m.std[:, 0].expand(len(R)))
    else:
        torch.testing.assert_close(std, m.std[:, 0].expand(len(R)).to(std.dtype))


@pytest.mark.parametrize("name", sorted(REFS))
def test_transitions_compose_and_give_the_bridge(name):
    """Chapman–Kolmogorov, and the bridge pinned at (x0, x1) is the Gaussian conditioning of
    the two kernels: mean = a_t x0 + (a_{t1} v_t / v_1)(x1 - a_1 x0), var = v_t - a_{t1}^2 v_t^2 / v_1."""
    sde = REFS[name]()
    zero, one = torch.zeros_like(R), torch.ones_like(R)
    a_t, s_t = sde.transition(zero, R)
    a_t1, s_t1 = sde.transition(R, one)
    a_1, s_1 = sde.transition(zero, one)
    torch.testing.assert_close(a_t * a_t1, a_1)
    torch.testing.assert_close(a_t1**2 * s_t**2 + s_t1**2, s_1**2)
    x0 = torch.full((len(R), 2), -0.4, dtype=torch.float64)
    x1 = torch.full((len(R), 2), 2.0, dtype=torch.float64)
    b = sde.bridge(R, x0, x1)
    v_t, v_1 = s_t**2, s_1**2
    mean = a_t * -0.4 + a_t1 * v_t / v_1 * (2.0 - a_1 * -0.4)
    var = v_t - (a_t1 * v_t) ** 2 / v_1
    torch.testing.assert_close(b.mean[:, 0], mean.to(b.mean.dtype))
    torch.testing.assert_close((b.std[:, 0] ** 2).expand(len(R)).to(var.dtype), var)
    # the bridge drift moves the bridge's mean: d/dt mean_t = bridge_drift(t, mean_t)
    h = 1e-5
    dm = (sde.bridge(R + h, x0, x1).mean - sde.bridge(R - h, x0, x1).mean) / (2 * h)
    torch.testing.assert_close(sde.bridge_drift(R, b.mean, x1), dm, atol=1e-5, rtol=1e-5)


def test_every_reference_is_a_noising_process_or_says_so():
    assert isinstance(Brownian(2.0).as_noising(), BrownianNoising)
    assert Brownian(2.0).as_noising().prior_std == 2.0
    vp = SDES["vp"]()
    assert vp.as_noising() is vp
    assert Brownian(0.5).sigma == 0.5 and vp.sigma is None  # only Brownian has "the" sigma
