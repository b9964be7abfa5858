"""Class-conditional training and classifier-free guidance (Ho & Salimans 2022; seeds 000, 001).

Conditioning lives in the networks, not in the methods: a conditional network takes
labels ``y: (B,)`` (``None`` or ``-1``: the null class), and

- training binds each batch's labels to the networks (:class:`LabelledNet`), replaced by
  the null class with probability ``method.cond_drop`` (label dropout), so one network
  learns ``f(x, t | c)`` and the unconditional ``f(x, t) = f(x, t | null)``;
- sampling replaces each network by the guided combination (:class:`GuidedNet`)::

      f_w(x, t | c) = (1 + w) f(x, t | c) - w f(x, t | null),     w = sampler.guidance.

Every output that the four methods regress is affine in the score of the noisy marginal,
with coefficients that do not depend on ``c``: DDPM / score-SDE's noise ``eps = -sigma_s
s``, flow matching's velocity ``u_t = a_t x + b_t s`` on a Gaussian path from a Gaussian
source, a stochastic interpolant's ``b`` and ``eta_z = -gamma_t s``. Since ``(1 + w) - w =
1`` the combination is the same affine map of the guided score
``(1 + w) s(x | c) - w s(x) = s(x) + (1 + w) grad log p(c | x)``, i.e. sampling from
``p(x) p(c | x)^(1 + w)`` in the limit of small noise. ``w = 0`` samples the conditional
model, ``w = -1`` the unconditional one.

What it does not support (refused in :func:`make_conditioning`): minibatch-OT couplings
(the plan re-pairs ``x1`` and its labels would no longer follow), reflow (the regenerated
pairs carry no labels) and ``noise_draws > 1`` (rows repeated in a layout the labels
cannot follow). Methods are told apart by what they declare (``Method.coupling``,
``reflow``, ``noise_draws``), never by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sbrun.data.conditional import Labels, labels_of
from sbrun.data.distributions import Problem
from sbrun.errors import ConfigError

LABELLED_COUPLINGS = ("independent", "paired")


def match_rows(y: Tensor, rows: int) -> Tensor:
    """Labels ``y: (B,)`` for a network call on ``rows`` rows: ``y`` itself, or ``k`` stacked
    copies when the method stacked ``k`` copies of its batch (antithetic draws)."""
    if rows == y.shape[0]:
        return y
    if rows % y.shape[0] == 0:
        return y.repeat(rows // y.shape[0])
    raise ValueError(f"{y.shape[0]} labels for a network call on {rows} rows")


class LabelledNet(nn.Module):
    """``net(x, t, y)`` with the labels ``y: (B,)`` bound (``None``: the null class)."""

    def __init__(self, net: nn.Module, y: Tensor | None):
        super().__init__()
        self.net, self.y = net, y

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        y = None if self.y is None else match_rows(self.y, x.shape[0]).to(x.device)
        return self.net(x, t, y)


class GuidedNet(nn.Module):
    """``(1 + w) net(x, t, y) - w net(x, t, null)``; one batched call of ``2B`` rows."""

    def __init__(self, net: nn.Module, y: Tensor, w: float):
        super().__init__()
        self.net, self.y, self.w = net, y, float(w)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        y = match_rows(self.y, x.shape[0]).to(x.device)
        if self.w == 0:
            return self.net(x, t, y)
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(x.shape[0]) if t.dim() == 0 else t
        out = self.net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, -1)]))
        cond, uncond = out.chunk(2)
        return cond + self.w * (cond - uncond)


def wrap(nets: nn.ModuleDict, make) -> nn.ModuleDict:
    """``{name: make(net)}`` over the networks (the originals are shared, not copied)."""
    return nn.ModuleDict({k: make(net) for k, net in nets.items()})


@dataclass
class Conditioning:
    """A class-conditional run: ``K`` classes, label dropout, and how it samples.

    Attributes:
        labels: the labelled view of the target (:mod:`sbrun.data.conditional`).
        cond_drop: probability that a training label is replaced by the null class;
            ``None``: the networks are unconditional (classifier guidance only).
        guidance: ``w`` of :class:`GuidedNet` (``sampler.guidance``).
        label: the class every evaluation sample is drawn from (``sampler.label``);
            ``None`` cycles through all classes (``y_i = i mod K``).
        classifier: a time-conditioned classifier's guidance
            (:class:`~sbrun.methods.classifier_guidance.ClassifierGuidance`), or ``None``.
    """

    labels: Labels
    cond_drop: float | None
    guidance: float = 0.0
    label: int | None = None
    classifier: object | None = None

    @property
    def num_classes(self) -> int:
        return self.labels.num_classes

    def model_kwargs(self) -> dict:
        return {} if self.cond_drop is None else {"num_classes": self.num_classes}

    def drop(self, y: Tensor, generator: torch.Generator | None) -> Tensor:
        """``y`` with each label replaced by the null class (-1) with prob. ``cond_drop``."""
        if self.cond_drop == 0:
            return y
        drop = torch.rand(y.shape, generator=generator).to(y.device) < self.cond_drop
        return torch.where(drop, torch.full_like(y, -1), y)

    def training_nets(self, nets: nn.ModuleDict, y: Tensor,
                      generator: torch.Generator | None) -> nn.ModuleDict:
        """The networks with this batch's labels bound, after label dropout."""
        if self.cond_drop is None:  # unconditional networks (classifier guidance only)
            return nets
        y = self.drop(y, generator)
        return wrap(nets, lambda net: LabelledNet(net, y))

    def sample_labels(self, n: int) -> Tensor:
        """``(n,)`` classes of the evaluation samples (``label``, or ``i mod K``)."""
        if self.label is not None:
            return torch.full((n,), self.label, dtype=torch.long)
        return torch.arange(n) % self.num_classes

    def sampling_nets(self, nets: nn.ModuleDict, y: Tensor) -> nn.ModuleDict:
        """The guided networks for samples of classes ``y: (B,)``."""
        if self.cond_drop is not None:
            nets = wrap(nets, lambda net: GuidedNet(net, y, self.guidance))
        return nets if self.classifier is None else self.classifier.wrap(nets, y)

    @staticmethod
    def null_nets(nets: nn.ModuleDict) -> nn.ModuleDict:
        """The unconditional (null-class) networks (for likelihoods, path energies)."""
        return wrap(nets, lambda net: LabelledNet(net, None))


def train_nets(method, nets: nn.ModuleDict, batch) -> nn.ModuleDict:
    """What the trainer hands ``method.loss``: ``nets``, with labels bound when conditional."""
    cond = method.conditioning
    if cond is None or cond.cond_drop is None:
        return nets
    if batch.y is None:
        raise ConfigError("a class-conditional run got a batch without labels")
    return cond.training_nets(nets, batch.y, batch.generator)


def check_method(method) -> None:
    """A method whose training re-pairs or repeats rows cannot carry labels: refuse it."""
    if method.coupling not in LABELLED_COUPLINGS:
        raise ConfigError(f"method.cond_drop with method.coupling={method.coupling}: the minibatch plan "
                          f"re-pairs x1 and its labels; use {' or '.join(LABELLED_COUPLINGS)}")
    if method.reflow:
        raise ConfigError("method.cond_drop with method.reflow > 0: reflow pairs carry no labels")
    if method.noise_draws != 1:
        raise ConfigError("method.cond_drop needs method.noise_draws=1")


def make_conditioning(method, problem: Problem, cond_drop: float | None, guidance: float = 0.0,
                      label: int | None = None, classifier=None) -> Conditioning | None:
    """Validate the conditioning options before any training; ``None``: unconditional.

    ``cond_drop``: ``method.cond_drop`` (``None``: unconditional networks); ``guidance``,
    ``label``: ``sampler.guidance``, ``sampler.label``; ``classifier``: the validated
    :class:`~sbrun.methods.classifier_guidance.ClassifierGuidance` (``sampler.classifier_path``).
    """
    if cond_drop is None:
        if guidance != 0:
            raise ConfigError(f"sampler.guidance={guidance:g} needs a class-conditional run: set "
                              "method.cond_drop (label dropout, e.g. 0.1) on labelled data")
        if classifier is not None:  # unconditional networks, guided by a noisy classifier
            return Conditioning(classifier.labels, None, 0.0,
                                None if label is None else classifier.labels.check(label), classifier)
        if label is not None:
            raise ConfigError(f"sampler.label={label} needs a class-conditional run: set "
                              "method.cond_drop (e.g. 0.1) on labelled data, or "
                              "sampler.classifier_path")
        return None
    if not 0 <= cond_drop < 1:
        raise ConfigError(f"method.cond_drop must be in [0, 1), got {cond_drop}")
    labels = None if problem.source is not None else labels_of(problem.target)
    if labels is None:
        why = "is not generative" if problem.source is not None else "has no class labels"
        raise ConfigError(f"method.cond_drop: data={problem.name} {why} (class labels: mnist, "
                          "fashion_mnist, emnist, 8gaussians, gmm_highdim generative=true, "
                          "multi2d generative=true)")
    check_method(method)
    if not guidance >= -1:
        raise ConfigError(f"sampler.guidance must be >= -1 (-1: unconditional), got {guidance}")
    if guidance != 0 and cond_drop == 0:
        raise ConfigError("sampler.guidance needs the unconditional model: method.cond_drop > 0")
    if label is not None:
        label = labels.check(label)
    return Conditioning(labels, float(cond_drop), float(guidance), label, classifier)
