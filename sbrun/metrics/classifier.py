"""The small image classifier behind ``fid_classifier``, class accuracy and the
``classifier`` reward: a LeNet-size CNN trained on a labelled image set (by
``scripts/train_classifier.py`` or once on first use, cached in ``$SBRUN_CACHE``), saved
as plain tensors and read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbrun.errors import ConfigError, DataError

TRAIN_CMD = ("python scripts/train_classifier.py --dataset mnist --root <data root> "
             "--out <file.pt>")
log = logging.getLogger(__name__)


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
    if target.labels_train is None or target.labels_test is None:
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
