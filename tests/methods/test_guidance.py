"""Class-conditional training and classifier-free guidance (sbrun.methods.guidance).

The guided score of a closed-form Gaussian mixture, ``s(x) + (1 + w) grad log p(c | x)``
(the class posterior differentiated by autograd), must come out of each method's own
score / drift when its networks are the exact conditional fields.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from sbrun.data.gaussians import GaussianMixture
from sbrun.data.problems import toy
from sbrun.errors import ConfigError
from sbrun.methods.base import Batch, Method
from sbrun.methods.flow_matching import FlowMatching
from sbrun.methods.guidance import Conditioning, make_conditioning, match_rows, train_nets
from sbrun.methods.score_sde import ScoreSDE
from sbrun.models import MLP
from sbrun.sde.vp import VP
from tests.conftest import REPO, compose

MEANS = torch.tensor([[-2.0, 0.0], [1.5, 1.0], [0.5, -2.0]], dtype=torch.float64)
STDS = torch.tensor([0.5, 0.3, 0.7], dtype=torch.float64)
WEIGHTS = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)


def noisy_logits(x, alpha, sigma):
    """``(B, K)``: ``log w_k + log N(x; alpha mu_k, (alpha^2 s_k^2 + sigma^2) I)``."""
    var = alpha**2 * STDS**2 + sigma**2
    sq = (x[:, None, :] - alpha * MEANS[None]).pow(2).sum(-1)
    return WEIGHTS.log() - 0.5 * sq / var - torch.log(2 * torch.pi * var)


def exact_guided_score(x, c, w, alpha, sigma):
    """``s(x) + (1 + w) grad log p(c | x)`` by autograd of the noisy mixture."""
    x = x.clone().requires_grad_(True)
    logits = noisy_logits(x, alpha, sigma)
    log_px = torch.logsumexp(logits, 1)
    log_post = logits.gather(1, c[:, None]).squeeze(1) - log_px
    s = torch.autograd.grad(log_px.sum(), x, retain_graph=True)[0]
    g = torch.autograd.grad(log_post.sum(), x)[0]
    return s + (1 + w) * g


def component_score(x, c, alpha, sigma):
    """Score of one noisy component ``N(alpha mu_c, (alpha^2 s_c^2 + sigma^2) I)``; ``c = -1``:
    the whole mixture."""
    var = alpha**2 * STDS**2 + sigma**2
    comp = -(x - alpha * MEANS[c.clamp(min=0)]) / var[c.clamp(min=0), None]
    r = torch.softmax(noisy_logits(x, alpha, sigma), 1)
    mix = (r[:, :, None] * -(x[:, None] - alpha * MEANS[None]) / var[None, :, None]).sum(1)
    return torch.where((c < 0)[:, None], mix, comp)


class OracleEps(nn.Module):
    """Score-SDE's eps-network of the labelled mixture: ``-sigma_s s(x | y)`` (one time
    ``s`` per call, as the samplers make them)."""

    def __init__(self, sde):
        super().__init__()
        self.sde = sde

    def forward(self, xin, s, y=None):
        alpha, sigma = self.sde.coefficients(s, xin)
        x = xin * (alpha**2 + sigma**2).sqrt()
        y = torch.full((x.shape[0],), -1) if y is None else y
        return -sigma * component_score(x, y, alpha[0, 0].double(), sigma[0, 0].double())


class OracleVelocity(nn.Module):
    """Flow matching's velocity from N(0, I) along ``x_t = (1 - t) x0 + t x1``:
    ``u_t(x | y) = (x + (1 - t) s_t(x | y)) / t``, ``alpha = t``, ``sigma = 1 - t``."""

    def forward(self, x, t, y=None):
        y = torch.full((x.shape[0],), -1) if y is None else y
        tt = t[0].double()
        return (x + (1 - tt) * component_score(x, y, tt, 1 - tt)) / tt


def mixture_conditioning(w: float) -> Conditioning:
    problem = toy("8gaussians")
    cond = make_conditioning(Method(), problem, 0.1, guidance=w)  # the declared defaults
    return cond


@pytest.mark.parametrize("w", [0.0, 1.0, 3.5])
def test_guided_score_sde_equals_the_guided_mixture_score(w):
    sde = VP()
    method = ScoreSDE()
    method.bind(toy("8gaussians"), sde)
    nets = nn.ModuleDict({"net": OracleEps(method.sde)})
    x = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    c = torch.arange(64) % 3
    guided = mixture_conditioning(w).sampling_nets(nets, c)
    for s in (0.05, 0.3, 0.8):
        sv = torch.full((64,), s, dtype=torch.float64)
        alpha, sigma = method.sde.coefficients(sv, x)
        alpha, sigma = alpha[0, 0], sigma[0, 0]
        expected = exact_guided_score(x, c, w, alpha, sigma)
        torch.testing.assert_close(method.score(guided, x, sv), expected)
        # w = 0 is the conditional score, not the mixture's
        if w == 0:
            torch.testing.assert_close(method.score(guided, x, sv),
                                       component_score(x, c, alpha, sigma))


@pytest.mark.parametrize("w", [0.5, 2.0])
def test_guided_flow_matching_velocity_is_that_of_the_guided_score(w):
    method = FlowMatching()
    nets = nn.ModuleDict({"net": OracleVelocity()})
    x = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    c = torch.arange(32) % 3
    drift = method.drift(mixture_conditioning(w).sampling_nets(nets, c))
    for t in (0.2, 0.5, 0.9):
        tv = torch.full((32,), t, dtype=torch.float64)
        s_w = exact_guided_score(x, c, w, torch.tensor(t, dtype=torch.float64), 1 - t)
        torch.testing.assert_close(drift(tv, x), (x + (1 - t) * s_w) / t)


def test_label_dropout_rate_and_binding():
    cond = mixture_conditioning(0.0)
    cond.cond_drop = 0.3
    y = torch.randint(0, 8, (200_000,), generator=torch.Generator().manual_seed(0))
    dropped = cond.drop(y, torch.Generator().manual_seed(1))
    rate = float((dropped == -1).float().mean())
    assert abs(rate - 0.3) < 0.005  # 200k Bernoulli(0.3): std 0.001
    kept = dropped != -1
    assert torch.equal(dropped[kept], y[kept])

    seen = {}

    class Spy(nn.Module):
        def forward(self, x, t, y=None):
            seen["y"] = y
            return x

    class Holder:
        conditioning = cond

    batch = Batch(torch.zeros(1000, 2), torch.zeros(1000, 2), torch.Generator().manual_seed(2),
                  y=torch.arange(1000) % 8)
    nets = train_nets(Holder(), nn.ModuleDict({"net": Spy()}), batch)
    nets["net"](torch.zeros(2000, 2), torch.zeros(2000))  # an antithetic (stacked) batch
    got = seen["y"]
    assert got.shape == (2000,) and torch.equal(got[:1000], got[1000:])
    assert 0.2 < float((got == -1).float().mean()) < 0.4


def test_match_rows_refuses_a_mismatch():
    assert torch.equal(match_rows(torch.tensor([1, 2]), 4), torch.tensor([1, 2, 1, 2]))
    with pytest.raises(ValueError):
        match_rows(torch.tensor([1, 2]), 3)


def test_null_class_is_the_unconditional_model():
    net = MLP((2,), hidden=16, depth=1, num_classes=3)
    x, t = torch.randn(5, 2), torch.rand(5)
    torch.testing.assert_close(net(x, t), net(x, t, torch.full((5,), -1)))
    assert not torch.allclose(net(x, t, torch.zeros(5, dtype=torch.long)), net(x, t))
    with pytest.raises(ConfigError):
        MLP((2,), hidden=16, depth=1)(x, t, torch.zeros(5, dtype=torch.long))


def test_gmm_labels_follow_components():
    from sbrun.data.conditional import labels_of

    gmm = GaussianMixture(WEIGHTS, MEANS, STDS)
    lab = labels_of(gmm)
    x, y = lab.sample(30_000, torch.Generator().manual_seed(0))
    for k in range(3):
        torch.testing.assert_close(x[y == k].double().mean(0), MEANS[k], atol=0.03, rtol=0)
        assert abs(float((y == k).float().mean()) - float(WEIGHTS[k])) < 0.015


@pytest.mark.parametrize("overrides, message", [
    (["data=8gaussians", "sampler.guidance=2"], "needs a class-conditional run"),
    (["data=8gaussians", "method.cond_drop=0.1", "sampler.label=8"], "unknown class 8"),
    (["data=moons", "method.cond_drop=0.1"], "has no class labels"),
    (["data=8gaussians", "method.cond_drop=0", "sampler.guidance=1"], "cond_drop > 0"),
    (["data=8gaussians", "method.cond_drop=0.1", "method.coupling=exact_ot"], "re-pairs"),
    (["data=8gaussians", "method.cond_drop=1.5"], "in [0, 1)"),
])
def test_bad_conditioning_is_a_one_line_error_before_training(overrides, message):
    from sbrun.pipeline.build import build

    cfg = compose(["debug=smoke", "logger=none", *overrides])
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        build(cfg)
    assert "\n" not in str(e.value)


def test_conditional_run_and_transport_of_one_class(cli, tmp_path):
    import numpy as np

    from sbrun.transport import transport_points

    env = {"PYTHONPATH": str(REPO)}  # this checkout's sbrun, wherever the CLI runs
    proc, run = cli("method=flow-matching", "data=8gaussians", "method.cond_drop=0.2",
                    "sampler.guidance=1", "debug=smoke", "logger=none", "method.energy_steps=0",
                    env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = np.load(run / "samples.npz")
    assert np.array_equal(saved["y"], np.arange(len(saved["x1"])) % 8)
    assert (run / "figures" / "classes.png").is_file()
    x = np.random.default_rng(0).standard_normal((10, 2)).astype("float32")
    out = transport_points(run, x, label=5, guidance=2.0)
    assert out["x1"].shape == (10, 2) and (out["y"] == 5).all()
    with pytest.raises(ConfigError, match="unknown class 9"):
        transport_points(run, x, label=9)
    proc, plain = cli("method=flow-matching", "data=8gaussians", "debug=smoke", "logger=none",
                      "trainer.steps=2", "method.energy_steps=0", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with pytest.raises(ConfigError, match="needs a class-conditional run"):
        transport_points(plain, x, label=1)


@pytest.mark.parametrize("method_name", ["flow-matching", "ddpm", "score-sde",
                                         "stochastic-interpolant"])
def test_every_method_drift_is_the_guided_combination(method_name):
    """Each method's sampling drift is affine in its network outputs with weights summing
    to one, so the guided drift is ``(1 + w) drift(c) - w drift(null)``."""
    from sbrun.pipeline.build import build

    cfg = compose(["debug=smoke", "logger=none", f"method={method_name}", "data=8gaussians",
                   "method.cond_drop=0.1", "sampler.guidance=1.5"])
    c = build(cfg)
    cond = c.method.conditioning
    for p in c.nets.parameters():  # a network whose class embedding matters
        p.data.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
    y = torch.arange(16) % 8
    x, t = torch.randn(16, 2), torch.full((16,), 0.4)
    null = cond.null_nets(c.nets)
    cond_nets = Conditioning(cond.labels, 0.0).training_nets(c.nets, y, None)
    guided = c.method.drift(cond.sampling_nets(c.nets, y))(t, x)
    expected = 2.5 * c.method.drift(cond_nets)(t, x) - 1.5 * c.method.drift(null)(t, x)
    torch.testing.assert_close(guided, expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(guided, c.method.drift(null)(t, x), atol=1e-3)
