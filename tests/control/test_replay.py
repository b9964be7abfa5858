"""Reciprocal adjoint matching with a replay buffer (Adjoint Sampling) on the reference from the
origin: bridges of the time-changed Brownian chain, the buffer, the Gaussian closed form."""

import torch

from sbrun.control import estimators as est
from sbrun.control.chains import BrownianChain, reference_chain
from sbrun.control.metrics import gaussian_errors
from sbrun.control.objective import reward_objective
from sbrun.control.replay import ReplayBuffer, clip_norm, reciprocal_matching_loss, tilted_adjoint
from sbrun.sde import VE


def test_ve_reference_chain_is_brownian_with_the_ve_noise():
    """``s_k^2 = V(t_{k+1}) - V(t_k)``, ``V(1) = var(1) - var(s_min)``; the bridge is the base's."""
    sde = VE(0.05, 3.0)
    chain = reference_chain(sde, (2,), 20)
    x = est.rollout(chain, None, chain.prior.sample(40000), lambda x: x.sum(1),
                    torch.Generator().manual_seed(0), keep=True).xs
    v1 = float(sde.var(torch.tensor(1.0)) - sde.var(torch.tensor(sde.s_min)))
    assert abs(chain.terminal().std ** 2 / v1 - 1) < 1e-6
    assert abs(x[-1].var(0).mean() / v1 - 1) < 0.03
    assert chain.std(0) > 10 * chain.std(19)  # large increments early, fine ones at t = 1
    k = torch.full((40000,), 5)  # X_{t_5} | X_1 from the bridge vs the chain's own pairs
    draws = chain.bridge(k, x[-1], torch.randn(x[-1].shape, generator=torch.Generator().manual_seed(1)))
    joint = torch.cov(torch.cat([x[5], x[-1]], 1).T)
    bridged = torch.cov(torch.cat([draws, x[-1]], 1).T)
    torch.testing.assert_close(bridged, joint, atol=0.1, rtol=0.03)


def test_buffer_keeps_the_newest_and_clip_caps_norms():
    buf = ReplayBuffer(5)
    for i in range(3):
        buf.add(torch.full((2, 2), float(i)), torch.zeros(2, 2))
    assert len(buf) == 5 and buf.x1[0, 0] == 0 and buf.x1[-1, 0] == 2
    a = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    torch.testing.assert_close(clip_norm(a, 1.0), torch.tensor([[0.6, 0.8], [0.3, 0.4]]))


def test_reciprocal_matching_reaches_the_quadratic_closed_form():
    """N(0, I) (sigma = 1 from the origin) tilted by exp(-|x - c|^2 / 2) is N(c/2, I/2)."""
    from test_estimators import AffineControl, fit

    obj = reward_objective("quadratic", 1.0, BrownianChain((2,), 1, 1.0).terminal(), (2,),
                           center=[2.0, 1.0])
    chain = BrownianChain((2,), 40, 1.0)
    torch.manual_seed(0)
    u, buf, g = AffineControl(2), ReplayBuffer(2048), torch.Generator().manual_seed(0)

    def loss_at(i):
        if i % 2 == 0:  # a rollout feeds two regression batches
            x1 = est.rollout(chain, u, torch.zeros(256, 2), obj.beta, g, keep=False).xs[-1]
            buf.add(x1, est.terminal_adjoint(obj.beta, x1))
        return reciprocal_matching_loss(chain, u, *buf.sample(512, g), g)

    fit(u, loss_at)
    x = est.rollout(chain, u, torch.zeros(20000, 2), obj.beta, torch.Generator().manual_seed(5),
                    keep=False).xs[-1]
    err = gaussian_errors(x, obj.target)
    assert err["mean_error"] < 0.05 and err["cov_error"] < 0.05, err


def test_tilted_adjoint_is_the_conditional_mean_under_the_optimum():
    """``beta = |x - c|^2 / 2`` on ``dX = dW``: given ``X_t = x`` the optimum's ``X_1`` is ``N(x,
    r^2)`` tilted by ``exp(-beta)``, i.e. ``N(m, .)`` with ``m = (x / r^2 + c) / (1 / r^2 + 1)``,
    so ``E[grad beta(X_1) | x] = m - c`` (``r^2 = 1 - t``)."""
    chain = BrownianChain((2,), 10, 1.0)
    c = torch.tensor([2.0, 1.0], dtype=torch.float64)
    x = torch.tensor([[0.0, 0.0], [1.0, -1.0], [3.0, 2.0]], dtype=torch.float64)
    k = torch.tensor([0, 4, 8])
    est_a = tilted_adjoint(chain, lambda y: 0.5 * (y - c).pow(2).sum(1), k, x, 200000,
                           torch.Generator().manual_seed(0))
    r2 = (1 - chain.times[k]).double()[:, None]
    m = (x / r2 + c) / (1 / r2 + 1)
    torch.testing.assert_close(est_a, m - c, atol=0.01, rtol=0)
