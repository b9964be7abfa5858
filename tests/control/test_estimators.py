"""Gradient estimators of the control objective: exact gradients and the Gaussian closed form."""

import pytest
import torch
from torch import nn

from sbrun.control import estimators as est
from sbrun.control.chains import BrownianChain, MemorylessFlowChain
from sbrun.control.metrics import gaussian_errors
from sbrun.control.objective import reward_objective
from sbrun.data.distributions import StandardGaussian
from sbrun.models.mlp import MLP


class AffineControl(nn.Module):
    """``u(t, x) = A(t) x + b(t)`` (the optimal control of a linear-quadratic problem is affine)."""

    def __init__(self, d: int, hidden: int = 16):
        super().__init__()
        self.d = d
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, d * d + d))

    def forward(self, x, t):
        out, d = self.net(t[:, None].to(x.dtype)), self.d
        return (out[:, : d * d].reshape(-1, d, d) @ x[..., None])[..., 0] + out[:, d * d:]


class TimeOnly(nn.Module):
    """A control that ignores ``x`` (``du/dx = 0``: the lean adjoint is the full one)."""

    def __init__(self):
        super().__init__()
        self.net = MLP((2,), hidden=8, depth=1)

    def forward(self, x, t):
        return self.net(torch.zeros_like(x), t)


def fit(u: nn.Module, loss_at, steps: int = 200, lr: float = 2e-2) -> None:
    """Adam on ``loss_at(i)`` for ``steps`` steps, the learning rate decaying linearly to 0."""
    opt = torch.optim.Adam(u.parameters(), lr=lr)
    for i in range(steps):
        loss = loss_at(i)
        opt.param_groups[0]["lr"] = lr * (1 - i / steps)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _beta(x):
    return 0.5 * (x - torch.tensor([2.0, 1.0], dtype=x.dtype)).pow(2).sum(1) + x[:, 0].sin()


def _grad(control, fn):
    control.zero_grad()
    loss = fn(torch.Generator().manual_seed(3))
    loss.backward()
    return torch.cat([p.grad.flatten() for p in control.parameters()]), loss.detach()


def _chains():
    torch.manual_seed(1)
    velocity = MLP((2,), hidden=16, depth=2).double().requires_grad_(False)
    return [BrownianChain((2,), 6, 0.8), MemorylessFlowChain((2,), 6, velocity)]


@pytest.mark.parametrize("chain", _chains(), ids=["brownian", "memoryless-flow"])
def test_adjoint_and_adjoint_matching_gradients_equal_backprop(chain):
    torch.manual_seed(0)
    u = MLP((2,), hidden=16, depth=2).double()
    x0 = chain.prior.sample(5).double() + 0.1 * torch.randn(5, 2, dtype=torch.float64)
    g_bp, l_bp = _grad(u, lambda g: est.backprop_loss(chain, u, x0, _beta, g)[0])
    g_adj, l_adj = _grad(u, lambda g: est.adjoint_loss(chain, u, x0, _beta, g)[0])
    g_am, _ = _grad(u, lambda g: est.adjoint_matching_loss(chain, u, x0, _beta, g, lean=False)[0])
    g_lean, _ = _grad(u, lambda g: est.adjoint_matching_loss(chain, u, x0, _beta, g, lean=True)[0])
    torch.testing.assert_close(l_adj, l_bp)  # the adjoint's loss value is the objective
    torch.testing.assert_close(g_adj, g_bp)
    torch.testing.assert_close(g_am, g_bp)  # basic adjoint matching: the full adjoint
    assert (g_lean - g_bp).abs().max() > 1e-6  # the lean adjoint drops the du/dx terms ...
    v = TimeOnly().double()  # ... which vanish for a control that ignores x
    g_bp, _ = _grad(v, lambda g: est.backprop_loss(chain, v, x0, _beta, g)[0])
    g_lean, _ = _grad(v, lambda g: est.adjoint_matching_loss(chain, v, x0, _beta, g, lean=True)[0])
    torch.testing.assert_close(g_lean, g_bp)


def test_adjoint_matching_on_k_times_is_unbiased_in_expectation():
    chain = _chains()[1]
    torch.manual_seed(0)
    u = MLP((2,), hidden=16, depth=2).double()
    x0 = chain.prior.sample(4).double()
    full, _ = _grad(u, lambda g: est.adjoint_matching_loss(chain, u, x0, _beta, g)[0])
    subs = []
    for seed in range(300):
        u.zero_grad()
        est.adjoint_matching_loss(chain, u, x0, _beta, torch.Generator().manual_seed(3), times=2,
                                  _time_seed=seed)[0].backward()
        subs.append(torch.cat([p.grad.flatten() for p in u.parameters()]))
    mean = torch.stack(subs).mean(0)
    assert (mean - full).norm() < 0.1 * full.norm()


@pytest.mark.parametrize("estimator", est.ESTIMATORS)
def test_quadratic_reward_on_gaussian_base_matches_closed_form(estimator):
    """N(0, I) (Brownian from the origin, sigma = 1) tilted by exp(-|x - c|^2 / 2): N(c/2, I/2)."""
    obj = reward_objective("quadratic", 1.0, StandardGaussian((2,)), (2,), center=[2.0, 1.0])
    chain = BrownianChain((2,), 40, 1.0)
    torch.manual_seed(0)
    u = AffineControl(2)
    g = torch.Generator().manual_seed(0)
    x0 = torch.zeros(512, 2)
    if estimator == "adjoint_matching":
        fit(u, lambda i: est.adjoint_matching_loss(chain, u, x0, obj.beta, g)[0])
    else:
        fit(u, lambda i: getattr(est, f"{estimator}_loss")(chain, u, x0, obj.beta, g)[0])
    x = est.rollout(chain, u, torch.zeros(20000, 2), obj.beta, torch.Generator().manual_seed(5),
                    keep=False).xs[-1]
    err = gaussian_errors(x, obj.target)
    torch.testing.assert_close(obj.target.mean, torch.tensor([1.0, 0.5], dtype=torch.float64))
    assert err["mean_error"] < 0.05 and err["cov_error"] < 0.05, err
