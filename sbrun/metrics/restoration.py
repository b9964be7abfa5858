"""Restoration metrics of paired image problems (:mod:`sbrun.data.restoration`, whose
truth is a :class:`~sbrun.data.truth.Restoration`).

Images are in ``[-1, 1]`` (data range 2): ``PSNR = 10 log10(4 / MSE)`` per image, averaged.

- ``inpaint``: the unobserved pixels are those where the corrupted ``x0`` differs from
  the truth ``x1`` (noise equals a pixel with probability 0). ``mse_unobserved`` /
  ``psnr_unobserved`` of the completion there, ``mse_observed`` (how well the observed
  part is kept), and two baselines: ``mse_unobserved_copy`` copies ``x0``'s noise fill,
  ``mse_unobserved_blank`` fills the square with the background (-1).
- ``superres``: ``mse`` / ``psnr`` of the whole image, ``mse_lowres`` (the completion
  average-pooled against the observed low-resolution image: consistency), and
  ``mse_copy``: the baseline that returns ``x0`` (the noisy upsampled image).
"""

from __future__ import annotations

import torch
from torch import Tensor


def masked_mse(a: Tensor, b: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-image mean squared error over ``mask`` (all pixels if ``None``) -> ``(n,)``."""
    sq = (a - b).pow(2)
    if mask is None:
        return sq.flatten(1).mean(1)
    m = mask.to(sq.dtype)
    return (sq * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)


def psnr(mse: Tensor, data_range: float = 2.0) -> float:
    """Mean PSNR (dB) of per-image MSEs ``(n,)``."""
    return float((10 * torch.log10(data_range**2 / mse.clamp_min(1e-10))).mean())


class RestorationMetrics:
    """``metrics(x0, completed, x1) -> dict`` for ``kind`` = ``inpaint`` | ``superres``."""

    def __init__(self, kind: str, factor: int = 2):
        self.kind, self.factor = kind, int(factor)

    def score(self, method, nets, evaluator, samples: Tensor) -> dict:
        """The metrics of the evaluation's completions ``samples`` of ``evaluator.source``."""
        return self(evaluator.source, samples, evaluator.target)

    def __call__(self, x0: Tensor, completed: Tensor, x1: Tensor) -> dict:
        x0, completed, x1 = (t.detach().cpu().float() for t in (x0, completed, x1))
        if self.kind == "inpaint":
            hidden = x0 != x1
            mse_u = masked_mse(completed, x1, hidden)
            return {"mse_unobserved": float(mse_u.mean()), "psnr_unobserved": psnr(mse_u),
                    "mse_observed": float(masked_mse(completed, x1, ~hidden).mean()),
                    "mse_unobserved_copy": float(masked_mse(x0, x1, hidden).mean()),
                    "mse_unobserved_blank": float(masked_mse(-torch.ones_like(x1), x1, hidden).mean())}
        from sbrun.data.restoration import downsample

        mse = masked_mse(completed, x1)
        low = masked_mse(downsample(completed, self.factor), downsample(x1, self.factor))
        return {"mse": float(mse.mean()), "psnr": psnr(mse), "mse_lowres": float(low.mean()),
                "mse_copy": float(masked_mse(x0, x1).mean()),
                "psnr_copy": psnr(masked_mse(x0, x1))}



