"""A time-conditioned classifier ``p(c | x_t, t)`` for classifier guidance (Dhariwal & Nichol 2021).

The FID classifier (:mod:`sbrun.metrics.fid`) sees clean images only; guidance needs the
class posterior of the *noisy* state ``x_t`` at every time of the sampler. The path is the
run's own (:func:`sbrun.methods.classifier_guidance.path_coefficients`): ``x_t = B_t x1 +
S_t eps`` with ``x1`` a labelled data draw, ``t`` sbrun time (0: the prior, 1: the data).

Vectors get an MLP, images a small CNN; both add sinusoidal time features (the CNN as a
per-channel shift of every convolution). Files hold plain tensors, numbers and strings
(``torch.load(weights_only=True)``): the model config, the weights, the path table ``(B_t,
S_t)`` on :data:`PATH_GRID` it was trained on, the data set and the held-out accuracy.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbrun.errors import ConfigError, DataError
from sbrun.models.embeddings import SinusoidalEmbedding

FORMAT = "sbrun-noisy-classifier/1"
PATH_GRID = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
TRAIN_CMD = ("python scripts/train_noisy_classifier.py --out <file> <the run's overrides, "
             "e.g. data=8gaussians method=flow-matching>")


class NoisyClassifier(nn.Module):
    """``logits(x, t)``: ``x: (B, *D)``, ``t: (B,)`` -> ``(B, num_classes)``."""

    def __init__(self, shape, num_classes: int, hidden: int = 128, depth: int = 3,
                 time_dim: int = 32):
        super().__init__()
        self.config = {"shape": [int(s) for s in shape], "num_classes": int(num_classes),
                       "hidden": int(hidden), "depth": int(depth), "time_dim": int(time_dim)}
        self.shape, self.num_classes = tuple(self.config["shape"]), int(num_classes)
        self.embed = SinusoidalEmbedding(time_dim)
        if len(self.shape) == 3:  # images: three convolutions, each shifted by the time
            c, w = self.shape[0], hidden
            self.convs = nn.ModuleList([nn.Conv2d(c, w, 3, padding=1),
                                        nn.Conv2d(w, w, 3, stride=2, padding=1),
                                        nn.Conv2d(w, w, 3, stride=2, padding=1)])
            self.shift = nn.Linear(self.embed.dim, 3 * w)
            self.head = nn.Linear(w, num_classes)
            return
        width, layers = int(torch.tensor(self.shape).prod()) + self.embed.dim, []
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        self.mlp = nn.Sequential(*layers, nn.Linear(width, num_classes))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(x.shape[0]) if t.dim() == 0 else t
        emb = self.embed(t).to(x.dtype)
        if len(self.shape) != 3:
            return self.mlp(torch.cat([x.reshape(x.shape[0], -1), emb], 1))
        h = x
        for conv, shift in zip(self.convs, self.shift(emb).chunk(3, 1)):
            h = F.silu(conv(h) + shift[:, :, None, None])
        return self.head(h.mean((2, 3)))


def save_noisy_classifier(model: NoisyClassifier, path: str | Path, path_table: Tensor,
                          dataset: str, accuracy: dict[str, float]) -> None:
    """Write the classifier atomically; ``path_table``: ``(2, len(PATH_GRID))`` ``B_t, S_t``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save({"format": FORMAT, "config": model.config, "state_dict": model.state_dict(),
                "path_table": path_table.double().cpu(), "dataset": dataset,
                "accuracy": {str(k): float(v) for k, v in accuracy.items()}}, tmp)
    os.replace(tmp, path)


def load_noisy_classifier(path: str | Path) -> tuple[NoisyClassifier, dict]:
    """The classifier at ``path`` (eval mode, no gradients on its weights) and its file
    entries; a missing or foreign file is a one-line error. Never unpickles."""
    if not Path(path).is_file():
        raise DataError(f"sampler.classifier_path={path}: no such file; create it with: {TRAIN_CMD}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise DataError(f"sampler.classifier_path={path}: not a readable classifier file "
                        f"({type(e).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise DataError(f"sampler.classifier_path={path} is not a time-conditioned classifier "
                        f"(written by scripts/train_noisy_classifier.py); the FID classifier "
                        "of eval.classifier_path is not noise-aware")
    model = NoisyClassifier(**blob["config"])
    model.load_state_dict(blob["state_dict"])
    model.requires_grad_(False)
    return model.eval(), blob


@torch.no_grad()
def noisy_accuracy(model: NoisyClassifier, draw, labels, times, n: int = 1000,
                   seed: int = 0) -> dict[str, float]:
    """Accuracy on held-out draws of every class (``n`` in all) noised to each sbrun time
    in ``times`` by ``draw(x1, t, generator)``: ``{"acc_t<t>": fraction}``."""
    k = labels.num_classes
    parts = [labels.heldout_class(c, max(1, n // k), seed).float() for c in range(k)]
    x1 = torch.cat(parts)
    y = torch.cat([torch.full((len(p),), c) for c, p in enumerate(parts)])
    out, g = {}, torch.Generator().manual_seed(10_000 + seed)
    for t in times:
        xt = draw(x1, torch.full((len(x1),), float(t)), g)
        pred = torch.cat([model(xb, torch.full((len(xb),), float(t))).argmax(1)
                          for xb in xt.split(500)])
        out[f"acc_t{float(t):g}"] = float((pred == y).float().mean())
    return out


def fit_noisy_classifier(draw, labels, shape, steps: int = 2000, batch_size: int = 256,
                         lr: float = 2e-3, seed: int = 0, log=None, **model_kw) -> NoisyClassifier:
    """Train ``p(c | x_t, t)`` by cross-entropy on ``(draw(x1, t, g), c)``, ``t ~ U[0, 1]``,
    ``(x1, c)`` labelled data draws (``labels.sample``); Adam with a cosine decay."""
    if steps < 1 or batch_size < 1:
        raise ConfigError(f"steps and batch size must be >= 1, got {steps}, {batch_size}")
    torch.manual_seed(seed)
    model = NoisyClassifier(shape, labels.num_classes, **model_kw)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    for step in range(1, steps + 1):
        x1, y = labels.sample(batch_size, g)
        t = torch.rand(batch_size, generator=g)
        loss = F.cross_entropy(model(draw(x1.float(), t, g), t), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if log is not None and (step % max(1, steps // 10) == 0 or step == steps):
            log(f"step {step}/{steps}: loss {loss.item():.4f}")
    model.requires_grad_(False)
    return model.eval()
