"""Classifier guidance with a time-conditioned classifier (Dhariwal & Nichol 2021; seeds 000, 001).

A classifier ``p(c | x_t, t)`` trained on the run's own noisy path
(``scripts/train_noisy_classifier.py``, :mod:`sbrun.models.noisy_classifier`) tilts the
score at sampling time, ``w = sampler.classifier_scale``::

    s_w(x, t | c) = s(x, t) + w grad_x log p(c | x_t = x, t),

i.e. sampling ``p(x) p(c | x)^w`` in the limit of small noise. The run's networks may be
unconditional (the classic use) or class-conditional (then on top of classifier-free
guidance). Like :mod:`sbrun.methods.guidance` this acts on the networks: every output the
methods regress is affine in the score, ``out_w = out + k_t (s_w - s)``, with

- score-SDE: ``eps = -sigma_s s`` (``k = -sigma_s``; the network reads ``c_in x``); DDPM the
  same with the chain's ``sigma_i = sqrt(1 - abar_i)``;
- a Gaussian path from ``x0 ~ N(0, I)`` (flow matching, stochastic interpolants, coupling
  ``independent``): ``x_t = alpha_t x0 + beta_t x1 + gamma_t z = B_t x1 + S_t eps`` with
  ``B = beta``, ``S^2 = alpha^2 + gamma^2``. With Tweedie ``E[S eps | x_t] = -S^2 s`` and
  ``E[x1 | x_t] = (x - E[S eps | x_t]) / B``, the velocity ``E[B' x1 + alpha' x0 + gamma' z |
  x_t]`` (``alpha' x0 + gamma' z`` regressed on ``S eps`` has slope ``S' / S``) is::

      v = (B' / B) x + (S^2 B' / B - S S') s,   S S' = alpha alpha' + gamma gamma',

  so ``k_v = S^2 B' / B - S S'`` (velocity ``v`` / drift ``b``), ``k = 1`` (a score head),
  ``k = -gamma_t`` (the denoiser ``eta_z``). ``B' / B`` diverges at ``t = 0`` where ``grad log
  p(c | x_t)`` vanishes like ``B``: coefficient and classifier are read at ``t`` clipped to
  ``[T_MIN, 1]`` (the product's limit is finite).

The classifier reads sbrun time ``t`` (0: prior, 1: data) for every method; score-SDE's
noising time is ``s = 1 - (1 - s_min) t``. Its file stores the path ``(B_t, S_t)`` it was
trained on; a run on another path refuses it. Methods are told apart by what they declare
(``Method.family``, ``second_head``, ``coupling``, ``reflow``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sbrun.data.conditional import Labels, labels_of
from sbrun.errors import ConfigError
from sbrun.models.noisy_classifier import PATH_GRID, TRAIN_CMD, load_noisy_classifier
from sbrun.sde.base import expand_t

T_MIN = 0.1  # interpolant paths: guidance reads t clipped to [T_MIN, 1] (B_t = 0 at t = 0)


def path_coefficients(method, t: Tensor) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """``(B_t, S_t, B'_t, S_t S'_t)`` of the run's path ``x_t = B_t x1 + S_t eps`` at sbrun
    times ``t: (n,)`` (float64; the derivatives are ``None`` for noising SDEs)."""
    t = torch.as_tensor(t, dtype=torch.float64)
    if method.family == "interpolant":
        c = method.interpolant.coefficients(t)
        s2 = c.alpha_t**2 + c.gamma_t**2
        return c.beta_t, s2.sqrt(), c.d_beta_t, c.alpha_t * c.d_alpha_t + c.gamma_d_gamma_t
    sde = method.sde
    s = sde.to_noising_time(t)
    return sde.log_alpha(s).exp(), sde.var(s).clamp_min(0).sqrt(), None, None


def path_table(method) -> Tensor:
    """``(2, len(PATH_GRID))``: ``B_t`` and ``S_t`` on the grid (what a classifier file keeps)."""
    b, s, _, _ = path_coefficients(method, PATH_GRID)
    return torch.stack([b, s])


def noisy_draw(method):
    """``draw(x1, t, generator) -> x_t = B_t x1 + S_t eps``: data ``x1: (n, *D)`` noised along
    the run's path to sbrun times ``t: (n,)``."""

    def draw(x1: Tensor, t: Tensor, generator: torch.Generator | None = None) -> Tensor:
        b, s, _, _ = path_coefficients(method, t)
        eps = torch.randn(x1.shape, generator=generator, dtype=x1.dtype)
        return expand_t(b, x1).to(x1.dtype) * x1 + expand_t(s, x1).to(x1.dtype) * eps

    return draw


def output_map(method, name: str):
    """``f(inp, tn) -> (x, t, k)`` for network ``name`` called as ``net(inp, tn)``: the state
    ``x``, the classifier's sbrun time ``t: (B,)`` and ``k: (B, heads)``, the output change
    per unit of score change for each output head."""
    fam = method.family
    if fam == "interpolant":
        return _interpolant_map(method, name)
    sde = method.sde

    def f(inp: Tensor, s: Tensor):
        s64 = s.to(torch.float64)
        if fam == "chain":  # DDPM: eps = -sqrt(1 - abar_i) s, the network reads x itself
            abar = method.chain.alphas_bar.to(torch.float64)[method._index(s64).cpu()]
            sigma, x = (1 - abar).sqrt().to(inp.device), inp
        else:  # score-SDE: eps = -sigma_s s, the network reads c_in x
            alpha, sigma = sde.log_alpha(s64).exp(), sde.var(s64).clamp_min(0).sqrt()
            x = inp * expand_t((alpha**2 + sigma**2).sqrt(), inp).to(inp.dtype)
        return x, sde.to_sbrun_time(s64), -sigma[:, None]

    return f


def _interpolant_map(method, name: str):
    heads = {"b": ("v",), "eta": ("eta",), "s": ("s",)}.get(name)
    if heads is None:  # "net": one head, or two stacked (velocity/drift + score or eta)
        heads = ("v", method.second_head) if method.second_head else ("v",)

    def f(inp: Tensor, tn: Tensor):
        t = tn.to(torch.float64).clamp(T_MIN, 1.0)
        b, s, db, sds = path_coefficients(method, t)
        gamma = method.interpolant.latent.gamma(tn.to(torch.float64))
        k = {"v": s**2 * db / b - sds, "s": torch.ones_like(t), "eta": -gamma}
        return inp, t, torch.stack([k[h] for h in heads], 1)

    return f


def class_log_grad(classifier: nn.Module, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
    """``grad_x log p(y | x, t)`` (``(B, *D)``), by autograd even under ``no_grad``."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        logp = torch.log_softmax(classifier(xg, t.to(xg.device)), -1)
        (g,) = torch.autograd.grad(logp.gather(1, y[:, None]).sum(), xg)
    return g.detach()


class ClassifierGuidedNet(nn.Module):
    """``net(inp, tn) + w k_t grad_x log p(y | x_t, t)`` per output head (module docstring)."""

    def __init__(self, net: nn.Module, out_map, classifier: nn.Module, y: Tensor, w: float):
        super().__init__()
        self.net, self.out_map, self.classifier, self.y, self.w = net, out_map, classifier, y, float(w)

    def forward(self, inp: Tensor, tn) -> Tensor:
        from sbrun.methods.guidance import match_rows

        out = self.net(inp, tn)
        tn = torch.as_tensor(tn, device=inp.device)
        tn = tn.expand(inp.shape[0]) if tn.dim() == 0 else tn
        x, t, k = self.out_map(inp, tn)
        g = class_log_grad(self.classifier, x, t, match_rows(self.y, x.shape[0]).to(x.device))
        k = k.to(device=out.device, dtype=out.dtype).reshape(*k.shape, *[1] * (g.dim() - 1))
        if out.dim() == g.dim() + 1:  # stacked heads (B, H, *D)
            return out + self.w * k * g[:, None]
        return out + self.w * k[:, 0] * g


@dataclass
class ClassifierGuidance:
    """A loaded time-conditioned classifier, its scale ``w`` and the run's method."""

    classifier: nn.Module
    scale: float
    method: object
    labels: Labels

    def wrap(self, nets: nn.ModuleDict, y: Tensor) -> nn.ModuleDict:
        """The networks of samples of classes ``y: (B,)`` with the classifier's tilt."""
        if self.scale == 0:
            return nets
        self.classifier.to(next(iter(nets.parameters()), torch.empty(0)).device)
        return nn.ModuleDict({k: ClassifierGuidedNet(net, output_map(self.method, k),
                                                     self.classifier, y, self.scale)
                              for k, net in nets.items()})


def check_method(method) -> None:
    """Refuse a method whose outputs are not the affine maps of the score above."""
    fam = method.family
    if fam is None:
        raise ConfigError(f"sampler.classifier_path: method={method.name} has no score to guide (use "
                          "ddpm, score-sde, flow-matching or stochastic-interpolant)")
    if fam == "chain" and method.loss_type == "mu":
        raise ConfigError("sampler.classifier_path with method.loss=mu: guidance shifts the "
                          "noise prediction; use method.loss=eps or elbo")
    if fam != "interpolant":
        return
    if method.coupling != "independent" or method.reflow:
        raise ConfigError("sampler.classifier_path needs method.coupling=independent and no "
                          "reflow: the velocity is then affine in the score of a Gaussian path")
    if method.interpolant.path.name == "encoder_decoder":
        raise ConfigError("sampler.classifier_path: the encoder_decoder path forgets x1 before "
                          "t = 1/2 (B_t = 0); use method.path=linear or trigonometric")


def make_classifier_guidance(method, problem, path: str | None,
                             scale: float | None) -> ClassifierGuidance | None:
    """Validate ``sampler.classifier_path`` / ``sampler.classifier_scale`` before training
    (``None``: no classifier guidance) and load the classifier."""
    if path is None:
        if scale is not None:
            raise ConfigError(f"sampler.classifier_scale={scale:g} needs sampler.classifier_path "
                              f"(a time-conditioned classifier: {TRAIN_CMD})")
        return None
    scale = 1.0 if scale is None else float(scale)
    if not math.isfinite(scale):
        raise ConfigError(f"sampler.classifier_scale must be finite, got {scale}")
    if problem.source is not None:
        raise ConfigError(f"sampler.classifier_path: data={problem.name} is not generative "
                          "(classifier guidance samples from the prior)")
    labels = labels_of(problem.target)
    if labels is None:
        raise ConfigError(f"sampler.classifier_path: data={problem.name} has no class labels "
                          "(labelled: mnist, fashion_mnist, emnist, 8gaussians, gmm_highdim / "
                          "multi2d generative=true)")
    check_method(method)
    model, blob = load_noisy_classifier(path)
    k = int(blob["config"]["num_classes"])
    if k != labels.num_classes:
        raise ConfigError(f"sampler.classifier_path={path} has {k} classes, data={problem.name} "
                          f"has {labels.num_classes}")
    if tuple(blob["config"]["shape"]) != tuple(problem.shape):
        raise ConfigError(f"sampler.classifier_path={path} classifies shape "
                          f"{tuple(blob['config']['shape'])}, the data has {tuple(problem.shape)}")
    if not torch.allclose(blob["path_table"], path_table(method), atol=1e-4, rtol=1e-4):
        raise ConfigError(f"sampler.classifier_path={path} was trained on another noisy path "
                          "(B_t, S_t) than this run's: train it with this run's method, path and sde")
    return ClassifierGuidance(model, scale, method, labels)
