"""Classifier guidance with a time-conditioned classifier (sbrun.methods.classifier_guidance).

Closed forms: for a Gaussian mixture under a Gaussian path ``x_t = B_t x1 + S_t eps`` the
noisy class posterior ``p(c | x_t)`` is a softmax of Gaussian log-densities; the guided
score must be ``s(x) + w grad log p(c | x_t)``, and a velocity / drift the Gaussian
regression ``E[dx_t/dt | x_t, c]`` of the class (computed here by conditioning each
component, independently of the Tweedie conversion in the module).
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from sbrun.data.conditional import labels_of
from sbrun.data.problems import toy
from sbrun.errors import ConfigError, SbrunError
from sbrun.methods.classifier_guidance import ClassifierGuidance, noisy_draw, path_table
from sbrun.methods.ddpm import DDPM
from sbrun.methods.flow_matching import FlowMatching
from sbrun.methods.score_sde import ScoreSDE
from sbrun.methods.stochastic_interpolant import StochasticInterpolant
from sbrun.metrics.distances import w2
from sbrun.models.noisy_classifier import (
    NoisyClassifier,
    fit_noisy_classifier,
    load_noisy_classifier,
    noisy_accuracy,
    save_noisy_classifier,
)
from sbrun.sde.brownian import Brownian
from sbrun.sde.vp import VP
from tests.conftest import REPO, compose
from tests.methods.test_guidance import MEANS, STDS, OracleEps, component_score, noisy_logits

PROBLEM = toy("8gaussians")
LABELS = labels_of(PROBLEM.target)


class ExactPosterior(nn.Module):
    """``log p(c | x_t)`` (up to a constant) of the 3-component mixture; ``coef(t) -> (B, S)``."""

    def __init__(self, coef):
        super().__init__()
        self.coef = coef

    def forward(self, x, t):
        b, s = self.coef(t[:1])
        return noisy_logits(x, b.reshape(()), s.reshape(()))


def guided(method, nets, w, y, classifier):
    return ClassifierGuidance(classifier, w, method, LABELS).wrap(nets, y)


@pytest.mark.parametrize("w", [0.5, 2.0])
def test_guided_score_sde_score_is_score_plus_w_grad_log_posterior(w):
    method = ScoreSDE()
    method.bind(PROBLEM, VP())
    sde = method.sde

    def coef(t):
        s = sde.to_noising_time(t.double())
        return sde.log_alpha(s).exp(), sde.var(s).sqrt()

    x = 2 * torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    c = torch.arange(64) % 3
    nets = guided(method, nn.ModuleDict({"net": OracleEps(sde)}), w, c, ExactPosterior(coef))
    for s in (0.05, 0.3, 0.8):
        sv = torch.full((64,), s, dtype=torch.float64)
        alpha, sigma = (v[0, 0] for v in sde.coefficients(sv, x))
        s_mix = component_score(x, torch.full((64,), -1), alpha, sigma)
        grad_post = component_score(x, c, alpha, sigma) - s_mix  # grad log p(c | x_s)
        torch.testing.assert_close(method.score(nets, x, sv), s_mix + w * grad_post)


def test_guided_ddpm_noise_is_that_of_the_guided_score():
    method = DDPM(chain_steps=200)
    method.bind(PROBLEM, VP())
    abar = method.chain.alphas_bar.double()

    def chain_coef(s):
        i = method._index(s)
        return abar[i].sqrt(), (1 - abar[i]).sqrt()

    class ChainEps(nn.Module):  # DDPM's eps-network of the mixture: -sigma_i s(x)
        def forward(self, x, s):
            a, sg = chain_coef(s[:1].double())
            return -sg * component_score(x, torch.full((x.shape[0],), -1), a, sg)

    x = 2 * torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    c = torch.arange(32) % 3
    post = ExactPosterior(lambda t: chain_coef(method.sde.to_noising_time(t.double())))
    nets = guided(method, nn.ModuleDict({"net": ChainEps()}), 1.5, c, post)
    for i in (10, 100, 190):
        sv = torch.full((32,), i / 200, dtype=torch.float64)
        a, sg = chain_coef(sv[:1])
        s_mix = component_score(x, torch.full((32,), -1), a, sg)
        expected = s_mix + 1.5 * (component_score(x, c, a, sg) - s_mix)
        torch.testing.assert_close(-method.eps(nets, x, sv) / sg, expected)


def regression(interp, x, t, c):
    """``E[dx_t/dt | x_t = x]`` and the score: the mixture's (``c = None``) or class ``c``'s,
    by Gaussian conditioning of each component (``x0 ~ N(0, I)``, ``z`` independent)."""
    k = interp.coefficients(torch.tensor(t, dtype=torch.float64))
    b, db = k.beta_t, k.d_beta_t
    var = b**2 * STDS**2 + k.alpha_t**2 + k.gamma_t**2  # (K,) variance of x_t | k
    cov = b * db * STDS**2 + k.alpha_t * k.d_alpha_t + k.gamma_d_gamma_t  # Cov(dx_t/dt, x_t | k)
    r = torch.softmax(noisy_logits(x, b, (k.alpha_t**2 + k.gamma_t**2).sqrt()), 1)
    if c is not None:
        r = nn.functional.one_hot(c, 3).double()
    dev = x[:, None] - b * MEANS[None]  # (B, K, 2)
    vel = db * MEANS[None] + (cov / var)[None, :, None] * dev
    score = -dev / var[None, :, None]
    return (r[..., None] * vel).sum(1), (r[..., None] * score).sum(1), k.gamma_t


def interpolant_case(kind):
    if kind == "fm":
        m = FlowMatching(blur=0.3)
    elif kind == "fm_bridge":
        m = FlowMatching(path="trigonometric", path_noise="bridge")
    else:
        m = StochasticInterpolant(score_param="eta" if kind == "si_eta" else "score")
    m.bind(PROBLEM, Brownian(sigma=0.8))
    return m


@pytest.mark.parametrize("kind", ["fm", "fm_bridge", "si_eta", "si_score"])
@pytest.mark.parametrize("w", [1.0, 2.5])
def test_guided_interpolant_fields_are_the_tilted_regressions(kind, w):
    """``v_w = v + w (v_c - v)`` (at ``w = 1`` the class's own velocity), ``s_w`` likewise,
    ``eta_w = -gamma s_w``: the score correction converted by ``S^2 B'/B - S S'``."""
    method = interpolant_case(kind)
    interp = method.interpolant
    heads = 1 if kind == "fm" else 2

    class Oracle(nn.Module):
        def forward(self, x, t):
            v, s, gamma = regression(interp, x, float(t[0]), None)
            if heads == 1:
                return v
            return torch.stack([v, -gamma * s if kind == "si_eta" else s], 1)

    def coef(t):
        k = interp.coefficients(t.double())
        return k.beta_t, (k.alpha_t**2 + k.gamma_t**2).sqrt()

    x = 1.5 * torch.randn(48, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    c = torch.arange(48) % 3
    nets = guided(method, nn.ModuleDict({"net": Oracle()}), w, c, ExactPosterior(coef))
    for t in (0.2, 0.5, 0.85):
        v, s, gamma = regression(interp, x, t, None)
        v_c, s_c, _ = regression(interp, x, t, c)
        out = nets["net"](x, torch.full((48,), t, dtype=torch.float64))
        first = out if heads == 1 else out[:, 0]
        torch.testing.assert_close(first, v + w * (v_c - v))
        if heads == 2:
            s_w = s + w * (s_c - s)
            torch.testing.assert_close(out[:, 1], -gamma * s_w if kind == "si_eta" else s_w)


@pytest.fixture(scope="module")
def fm_classifier():
    method = FlowMatching()
    method.bind(PROBLEM, Brownian())
    model = fit_noisy_classifier(noisy_draw(method), LABELS, (2,), steps=400, batch_size=256,
                                 seed=0, hidden=64)
    return method, model


def test_time_conditioned_classifier_is_accurate_at_small_noise(fm_classifier, tmp_path):
    method, model = fm_classifier
    acc = noisy_accuracy(model, noisy_draw(method), LABELS, (0.02, 0.95, 1.0), n=800)
    assert acc["acc_t0.95"] >= 0.95 and acc["acc_t1"] >= 0.95, acc
    assert acc["acc_t0.02"] < 0.3, acc  # nearly pure noise: about chance (1/8)
    path = tmp_path / "c.pt"
    save_noisy_classifier(model, path, path_table(method), "8gaussians", acc)
    loaded, blob = load_noisy_classifier(path)  # torch.load(weights_only=True)
    x, t = torch.randn(16, 2), torch.rand(16)
    torch.testing.assert_close(loaded(x, t), model(x, t))
    assert blob["accuracy"] == pytest.approx(acc) and blob["dataset"] == "8gaussians"


def test_guided_samples_concentrate_on_one_component(fm_classifier):
    """The exact unconditional velocity of 8gaussians plus a trained classifier's tilt, Euler
    on 20 steps: class 3's samples land on component 3."""
    method, model = fm_classifier
    d = PROBLEM.target
    means, std = d.scale * d.centres(), d.scale * d.COMP_STD

    class Velocity(nn.Module):  # x_t = t x1 + (1 - t) x0: E[x1 - x0 | x_t] of the mixture
        def forward(self, x, t):
            tt = t[:1].double().clamp_min(1e-9)
            var = tt**2 * std**2 + (1 - tt) ** 2
            dev = x.double()[:, None] - tt * means[None]
            r = torch.softmax(-0.5 * dev.pow(2).sum(-1) / var, 1)
            vel = means[None] + ((tt * std**2 - (1 - tt)) / var) * dev
            return (r[..., None] * vel).sum(1).float()

    y = torch.full((600,), 3)
    x0 = torch.randn(600, 2, generator=torch.Generator().manual_seed(4))
    ref = LABELS.heldout_class(3, 600, seed=0)

    def sample(w):
        drift = method.drift(guided(method, nn.ModuleDict({"net": Velocity()}), w, y, model))
        x, h = x0.clone(), 1 / 20
        for k in range(20):
            x = x + h * drift(torch.full((600,), k * h), x)
        return w2(x, ref)

    floor = w2(LABELS.heldout_class(3, 600, seed=1), ref)
    plain, tilted = sample(0.0), sample(1.0)
    assert tilted < 0.15 * plain and tilted < 4 * floor, (tilted, plain, floor)


def classifier_file(tmp_path, overrides, num_classes=8, name="c.pt"):
    """An (untrained) classifier file for the path of the run ``overrides``."""
    from sbrun.pipeline.build import build

    c = build(compose(["debug=smoke", "logger=none", *overrides]))
    path = tmp_path / name
    save_noisy_classifier(NoisyClassifier((2,), num_classes, hidden=8), path,
                          path_table(c.method), "8gaussians", {})
    return str(path)


def test_bad_classifier_options_are_one_line_errors(tmp_path):
    from sbrun.pipeline.build import build

    good = classifier_file(tmp_path, ["data=8gaussians", "method=flow-matching"])
    three = classifier_file(tmp_path, ["data=8gaussians"], num_classes=3, name="three.pt")
    fid_like = tmp_path / "fid.pt"
    torch.save({"config": {}, "state_dict": {}}, fid_like)
    cases = [
        ([f"sampler.classifier_path={tmp_path / 'nope.pt'}"], "no such file"),
        ([f"sampler.classifier_path={three}"], "has 3 classes"),
        ([f"sampler.classifier_path={fid_like}"], "not a time-conditioned classifier"),
        (["sampler.classifier_scale=2"], "needs sampler.classifier_path"),
        ([f"sampler.classifier_path={good}", "method=score-sde", "sde=vp"], "another noisy path"),
        ([f"sampler.classifier_path={good}", "method.coupling=exact_ot"], "coupling=independent"),
        ([f"sampler.classifier_path={good}", "sampler.label=8"], "unknown class 8"),
        ([f"sampler.classifier_path={good}", "sampler.guidance=1"], "needs a class-conditional"),
    ]
    for overrides, message in cases:
        cfg = compose(["debug=smoke", "logger=none", "data=8gaussians", *overrides])
        with pytest.raises(SbrunError, match=re.escape(message)) as e:
            build(cfg)
        assert "\n" not in str(e.value)
    cfg = compose(["debug=smoke", "logger=none", "data=moons", f"sampler.classifier_path={good}"])
    with pytest.raises(ConfigError, match="has no class labels"):
        build(cfg)


def test_classifier_guided_run_and_transport(cli, tmp_path):
    import json

    import numpy as np

    from sbrun.transport import transport_points

    path = classifier_file(tmp_path, ["data=8gaussians", "method=flow-matching"])
    env = {"PYTHONPATH": str(REPO)}
    proc, run = cli("method=flow-matching", "data=8gaussians", "debug=smoke", "logger=none",
                    "method.energy_steps=0", f"sampler.classifier_path={path}",
                    "sampler.classifier_scale=2", "sampler.label=3", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["classifier_scale"] == 2 and "w2_class_3" in metrics
    assert (np.load(run / "samples.npz")["y"] == 3).all()
    x = np.random.default_rng(0).standard_normal((10, 2)).astype("float32")
    plain = transport_points(run, x, label=3, classifier_scale=0.0)["x1"]
    tilted = transport_points(run, x, label=5, classifier_scale=3.0)
    assert (tilted["y"] == 5).all() and not np.allclose(plain, tilted["x1"])


def test_image_classifier_tilt_broadcasts_per_pixel():
    """Images: the CNN classifier's gradient, times ``k_v(t)``, is added to every pixel."""
    method = FlowMatching()
    method.bind(PROBLEM, Brownian())
    clf = NoisyClassifier((1, 8, 8), 3, hidden=8)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    t, y = torch.full((4,), 0.4), torch.tensor([0, 1, 2, 1])

    class Net(nn.Module):
        def forward(self, x, t):
            return 2 * x

    out = guided(method, nn.ModuleDict({"net": Net()}), 1.5, y, clf)["net"](x, t)
    xg = x.clone().requires_grad_(True)
    logp = torch.log_softmax(clf(xg, t), -1).gather(1, y[:, None]).sum()
    (g,) = torch.autograd.grad(logp, xg)
    k_v = 0.6**2 / 0.4 + 0.6  # S^2 B'/B - S S' of x_t = (1 - t) x0 + t x1 at t = 0.4
    torch.testing.assert_close(out, 2 * x + 1.5 * k_v * g)
    assert g.abs().sum() > 0
