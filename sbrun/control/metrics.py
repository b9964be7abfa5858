"""Evaluation numbers and figures of ``method=control`` (called by the method's hooks).

* ``reward_mean`` / ``reward_target``: ``E R`` under the fine-tuned model and the exact
  tilted law; ``w2_base``: W2 of the *base* (uncontrolled) chain to the tilted target
  (2D/vectors), the "before" of the run's ``w2``.
* Gaussian targets (quadratic reward on the reference): ``mean_error`` (``|m - m*| /
  sqrt(tr S*)``) and ``cov_error`` (``|S - S*|_F / |S*|_F``) of the samples' moments and
  ``kl_gaussian``, the KL of the moment-matched Gaussian to the closed form.
* ``mixture8``: ``modes_covered``, modes holding at least a quarter of their 1/8 share, and
  ``mode_share_min``, the emptiest mode's share in units of 1/8 (1: perfectly balanced).
* classifier rewards: ``class_rate`` (``class_rate_target``), the fraction of samples
  (target draws) the classifier gives ``p(class | x) > 1/2``.
* importance-resampled targets: ``target_ess``, the pool's effective sample size fraction.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sbrun.data.gaussians import Gaussian


def _moments(x: Tensor) -> tuple[Tensor, Tensor]:
    x = x.reshape(x.shape[0], -1).double().cpu()
    return x.mean(0), torch.cov(x.T).reshape(x.shape[1], x.shape[1])


def gaussian_errors(x: Tensor, target: Gaussian) -> dict[str, float]:
    """Moments of ``x: (n, d)`` against the closed-form ``N(m*, S*)``."""
    from sbrun.metrics.kl import kl_gaussian

    m, c = _moments(x)
    m_t, c_t = target.mean, target.cov
    return {"mean_error": float((m - m_t).norm() / c_t.trace().sqrt()),
            "cov_error": float((c - c_t).norm() / c_t.norm()),
            "kl_gaussian": kl_gaussian(m, c, m_t, c_t)}


def mode_shares(x: Tensor, means: Tensor) -> Tensor:
    """``(K,)``: the fraction of ``x: (n, d)`` nearest to each centre of ``means: (K, d)``."""
    nearest = torch.cdist(x.double().cpu(), means.double()).argmin(1)
    return torch.bincount(nearest, minlength=means.shape[0]).double() / x.shape[0]



@torch.no_grad()
def control_metrics(method, nets, x0: Tensor, result, target: Tensor) -> dict[str, float]:
    obj, out = method.objective, {}
    gen = result.x
    if obj.reward is not None:
        dev = x0.device  # where begin_phase put the reward
        r = torch.cat([obj.reward(c.to(dev)).cpu() for c in gen.split(512)])
        rt = torch.cat([obj.reward(c.to(dev)).cpu() for c in target.split(512)])
        out.update(reward_mean=float(r.mean()), reward_target=float(rt.mean()))
        cls = getattr(obj.reward, "cls", None)
        if cls is not None:  # classifier reward: how often the class is hit
            out["class_rate"] = float((r > -0.6931).double().mean())  # p(class | x) > 1/2
            out["class_rate_target"] = float((rt > -0.6931).double().mean())
    if isinstance(obj.target, Gaussian):
        out.update(gaussian_errors(gen, obj.target))
    if getattr(obj.target, "ess", None) is not None:
        out["target_ess"] = obj.target.ess
    if obj.energy is not None and hasattr(obj.energy, "means"):
        shares = mode_shares(gen.reshape(gen.shape[0], -1), obj.energy.means)
        out["modes_covered"] = int((shares >= 0.25 / len(shares)).sum())
        out["mode_share_min"] = float(shares.min() * len(shares))  # 1: the equal 1/K share
    if gen.dim() == 2:
        from sbrun.metrics.distances import w2

        base = method.simulate(nets, x0, method.steps, controlled=False,
                               generator=torch.Generator().manual_seed(1)).x.cpu()
        out["w2_base"] = w2(base, target.cpu(), max_points=2000,
                            generator=torch.Generator().manual_seed(0))
    return out


@torch.no_grad()
def control_figures(method, nets, ev) -> dict:
    """Seed 002's "Original model" / "Fine-tuned model" panel (samples and densities)."""
    if ev.x0.dim() != 2 or ev.x0.shape[1] != 2:
        return {}
    from sbrun.plots.control import before_after

    base = method.simulate(nets, ev.x0.to(next(nets.parameters()).device), method.steps,
                           controlled=False, generator=torch.Generator().manual_seed(1)).x.cpu()
    what = f"R = {method.reward}, λ = {method.reward_scale:g}" if method.reward else \
        f"E = {method.energy}"
    title = f"control ({method.base} base, {method.estimator}, {what})"
    return {"before_after": before_after(base, ev.result.x.cpu(), ev.target.cpu(), title)}
