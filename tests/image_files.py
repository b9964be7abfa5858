"""Small image files in the exact on-disk layouts torchvision reads (for tests)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

IMAGE_CONFIGS = ["mnist", "fashion_mnist", "emnist", "celeba", "emnist2mnist",
                 "fashion2mnist", "mnist_classes", "mnist_inpaint", "mnist_superres"]


def write_idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed IDX file (big-endian dims, uint8 data), as in LeCun's MNIST."""
    path.parent.mkdir(parents=True, exist_ok=True)
    head = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                      *array.shape)
    path.write_bytes(head + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _digits(n: int, rng: np.random.Generator, classes: int = 10) -> tuple:
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, classes, n)


def write_mnist_like(root: Path, folder: str, n: int = 20, seed: int = 0) -> None:
    """``<root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``."""
    rng = np.random.default_rng(seed)
    for split in ("train", "t10k"):
        x, y = _digits(n, rng)
        y[:10] = np.arange(10)  # every class present
        write_idx(root / folder / "raw" / f"{split}-images-idx3-ubyte", x)
        write_idx(root / folder / "raw" / f"{split}-labels-idx1-ubyte", y)


def write_emnist(root: Path, upright: dict, split: str = "letters") -> None:
    """EMNIST raw files; images stored transposed, as in NIST's files."""
    for part, x in upright.items():
        y = np.arange(1, len(x) + 1) % 26 + 1
        write_idx(root / "EMNIST" / "raw" / f"emnist-{split}-{part}-images-idx3-ubyte",
                  x.transpose(0, 2, 1))
        write_idx(root / "EMNIST" / "raw" / f"emnist-{split}-{part}-labels-idx1-ubyte", y)


def write_celeba(root: Path, n: int = 6, partition: bool = False) -> Path:
    """``n`` 178x218 JPEGs in ``<root>/celeba/img_align_celeba/`` (000001.jpg, ...)."""
    from PIL import Image

    folder = root / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = np.full((218, 178, 3), 30, np.uint8)
        img[:, :89] = rng.integers(150, 256, 3)  # bright left half: flips are visible
        Image.fromarray(img).save(folder / f"{i + 1:06d}.jpg", quality=95)
    if partition:
        (root / "celeba" / "list_eval_partition.txt").write_text(
            "".join(f"{i + 1:06d}.jpg {0 if i < n - 2 else 2}\n" for i in range(n)))
    return folder


def write_fake_image_root(root: Path) -> Path:
    """Tiny files for every image loader under ``root``; returns ``root``."""
    write_mnist_like(root, "MNIST")
    write_mnist_like(root, "FashionMNIST", seed=1)
    rng = np.random.default_rng(2)
    write_emnist(root, {"train": _digits(20, rng)[0], "test": _digits(20, rng)[0]})
    write_celeba(root)
    return root


def write_fake_classifier(path: Path) -> Path:
    """An untrained FID classifier file (the format of scripts/train_classifier.py)."""
    from sbrun.metrics.classifier import ClassifierFeatures, save_classifier

    save_classifier(ClassifierFeatures(width=4, feat_dim=8), path, test_accuracy=0.1, dataset="mnist")
    return path
