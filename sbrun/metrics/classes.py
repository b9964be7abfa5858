"""Per-class metrics of class-conditional samples (:mod:`sbrun.methods.guidance`).

- ``class_acc``: the fraction of generated images of class ``c`` that the FID classifier
  (``eval.classifier_path``, :mod:`sbrun.metrics.fid`) labels ``c``, averaged over the
  classes; ``class_acc_<c>`` per class.
- ``fid_classifier_class_<c>`` / ``fid_classifier_class_mean``: classifier FID of the
  samples of class ``c`` against held-out images of that class (with ``eval.fid`` =
  classifier or both; few images per class make it biased upwards: compare runs with
  the same ``eval.n_samples``).
- vectors: ``w2_class_<c>`` (exact W2 against held-out draws of that component, as many
  as were generated), ``w2_floor_class_<c>`` (two independent held-out sets of that size)
  and their ratio; ``w2_ratio_class_mean`` over the classes sampled.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sbrun.metrics.distances import w2

_FID_CACHE: dict = {}


def per_class_w2(x: Tensor, y: Tensor, labels, max_points: int, seed: int = 0) -> dict:
    """W2 of each class's samples ``x[y == c]`` against that class's held-out draws."""
    out, ratios = {}, []
    g = torch.Generator().manual_seed(seed)
    for c in torch.unique(y).tolist():
        gen = x[y == c]
        if len(gen) < 2:
            continue
        ref, ref_b = (labels.heldout_class(c, len(gen), seed + i) for i in (0, 1))
        d, floor = (w2(a, b, max_points=max_points, generator=g) for a, b in ((gen, ref), (ref, ref_b)))
        out.update({f"w2_class_{c}": d, f"w2_floor_class_{c}": floor,
                    f"w2_ratio_class_{c}": d / max(floor, 1e-12)})
        ratios.append(d / max(floor, 1e-12))
    if ratios:
        out["w2_ratio_class_mean"] = sum(ratios) / len(ratios)
    return out


@torch.no_grad()
def class_accuracy(x: Tensor, y: Tensor, classifier, batch_size: int = 500) -> dict:
    """``class_acc`` (mean over the classes present) and ``class_acc_<c>`` of images
    ``x: (n, C, H, W)`` meant to be of classes ``y: (n,)``."""
    pred = torch.cat([classifier.logits(x[i:i + batch_size]).argmax(1).cpu()
                      for i in range(0, len(x), batch_size)])
    hits = (pred == y.cpu()).float()
    out = {f"class_acc_{c}": float(hits[y == c].mean()) for c in torch.unique(y).tolist()}
    out["class_acc"] = sum(out.values()) / len(out)
    return out


def per_class_fid(x: Tensor, y: Tensor, labels, extractor, path: str, n_ref: int,
                  seed: int, device) -> dict:
    """Classifier FID of each class's samples against ``n_ref`` held-out images of it."""
    from sbrun.metrics.fid import FID

    out = {}
    for c in torch.unique(y).tolist():
        gen = x[y == c]
        if len(gen) < 2:
            continue
        key = (path, id(labels), c, n_ref, seed, str(device))
        if key not in _FID_CACHE:
            ref = labels.heldout_class(c, n_ref, seed)
            _FID_CACHE[key] = FID(extractor, "classifier", ref, f"class {c}", device=device)
        out[f"fid_classifier_class_{c}"] = _FID_CACHE[key](gen)["fid_classifier"]
    if out:
        out["fid_classifier_class_mean"] = sum(out.values()) / len(out)
    return out


def class_metrics(x: Tensor, y: Tensor, cond, cfg, seed: int = 0, device="cpu") -> dict:
    """The per-class metrics of samples ``x: (n, *D)`` generated for classes ``y: (n,)``.

    ``cond``: the run's :class:`~sbrun.methods.guidance.Conditioning`; ``cfg``: the
    ``eval`` config (``classifier_path``, ``fid``, ``fid_samples``, ``w2_points``).
    """
    out: dict = {"guidance": cond.guidance}
    if cond.classifier is not None:  # a time-conditioned classifier's guidance
        out["classifier_scale"] = cond.classifier.scale
    if x.dim() != 4:
        out.update(per_class_w2(x, y, cond.labels, cfg.w2_points, seed))
        return out
    if not cfg.classifier_path:
        return out
    from sbrun.metrics.fid import load_extractor

    classifier = load_extractor("classifier", cfg.classifier_path).to(device)
    out.update(class_accuracy(x.to(device), y, classifier))
    if cfg.fid in ("classifier", "both"):
        out.update(per_class_fid(x, y, cond.labels, classifier, cfg.classifier_path,
                                 cfg.fid_samples, seed, device))
    return out
