"""The closed-form interpolant fields between N(0, I) and a Gaussian mixture, checked by
identities that hold for the true conditional expectation and score only:
E[(dx_t/dt - b(x_t)) phi(x_t)] = 0 for test functions phi (b is E[dx/dt | x_t]), and
Stein's identity E[s(x_t) . phi(x_t) + div phi(x_t)] = 0 (s is the score of x_t's law)."""

import math

import pytest
import torch
from torch import nn

from sbrun.metrics.interpolant_truth import field_errors, mixture_fields
from sbrun.sde.interpolants import make_interpolant

W = torch.tensor([0.3, 0.7], dtype=torch.float64)
MU = torch.tensor([[2.0, -1.0], [-1.5, 1.0]], dtype=torch.float64)
STD = torch.tensor([0.4, 0.8], dtype=torch.float64)


def _draws(interp, t: float, n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    k = torch.multinomial(W, n, replacement=True, generator=g)
    x1 = MU[k] + STD[k, None] * torch.randn(n, 2, generator=g, dtype=torch.float64)
    x0 = torch.randn(n, 2, generator=g, dtype=torch.float64)
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    tt = torch.full((n,), t, dtype=torch.float64)
    xt, vel = interp.sample_and_velocity(tt, x0, x1, z)
    return tt, xt, vel


def _tests(x):  # test functions phi(x): (n, m), each a function of x_t alone
    return torch.stack([torch.ones_like(x[:, 0]), x[:, 0], x[:, 1], x[:, 0] * x[:, 1],
                        torch.sin(x[:, 0]), torch.tanh(x[:, 1])], 1)


@pytest.mark.parametrize("gamma,t", [("sqrt", 0.3), ("sqrt", 0.8), ("sin2", 0.5)])
def test_velocity_is_the_conditional_expectation(gamma, t):
    interp = make_interpolant("linear", gamma, 1.0)
    tt, xt, vel = _draws(interp, t, 400_000)
    b, _ = mixture_fields(interp, W, MU, STD, tt, xt)
    phi = _tests(xt)
    resid = ((vel - b)[:, :, None] * phi[:, None, :]).mean(0)  # (2, m)
    scale = (vel.std(0)[:, None] * phi.std(0).clamp_min(1.0)[None]) / math.sqrt(xt.shape[0])
    assert (resid.abs() < 5 * scale).all(), resid / scale
    # the check can fail: a field without the mixture's responsibilities violates it
    wrong = interp.coefficients(tt, xt).d_beta_t * (W[:, None] * MU).sum(0)
    bad = ((vel - wrong)[:, :, None] * phi[:, None, :]).mean(0)
    assert (bad.abs() > 5 * scale).any()


@pytest.mark.parametrize("t", [0.0, 0.4, 1.0])
def test_score_satisfies_stein(t):
    interp = make_interpolant("linear", "sqrt", 1.0)
    tt, xt, _ = _draws(interp, t, 400_000, seed=1)
    _, s = mixture_fields(interp, W, MU, STD, tt, xt)
    # phi(x) = (sin x_1, x_1 x_2): div phi = cos x_1 + x_1
    phi = torch.stack([torch.sin(xt[:, 0]), xt[:, 0] * xt[:, 1]], 1)
    div = torch.cos(xt[:, 0]) + xt[:, 0]
    terms = (s * phi).sum(1) + div
    assert abs(float(terms.mean())) < 5 * float(terms.std()) / math.sqrt(xt.shape[0])
    # at t = 1 the law is the mixture itself: the score is the mixture's
    if t == 1.0:
        from sbrun.data.gaussians import GaussianMixture

        ref = GaussianMixture(W, MU, STD, dtype=torch.float64).score(xt)
        torch.testing.assert_close(s, ref.double())


def test_field_errors_zero_for_exact_fields_and_scale_with_error():
    from sbrun.methods.stochastic_interpolant import StochasticInterpolant

    method = StochasticInterpolant(score_param="score", heads="separate")
    interp = method.interpolant

    class Field(nn.Module):
        def __init__(self, which, offset):
            super().__init__()
            self.which, self.offset, self.p = which, offset, nn.Parameter(torch.zeros(1))

        def forward(self, x, t):
            b, s = mixture_fields(interp, W, MU, STD, t, x)
            return ((b if self.which == "b" else s) + self.offset).float()

    nets = nn.ModuleDict({"b": Field("b", 0.0), "s": Field("s", 0.0)})
    out = field_errors(method, nets, W, MU, STD, n=2000)
    assert out["E_b"] < 1e-10 and out["E_s"] < 1e-10
    nets = nn.ModuleDict({"b": Field("b", 0.2), "s": Field("s", 0.1)})
    out = field_errors(method, nets, W, MU, STD, n=2000)
    assert out["E_b"] == pytest.approx(2 * 0.2 ** 2, rel=1e-4)
    assert out["E_s"] == pytest.approx(2 * 0.1 ** 2, rel=1e-4)
    assert out["eps_star"] == pytest.approx(2.0, rel=1e-4)
