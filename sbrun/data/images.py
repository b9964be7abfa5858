"""Image data sets as :class:`Empirical` train/test tensors ``(n, C, H, W)`` in ``[-1, 1]``.

Nothing here downloads by default. The data root is ``data.root`` (config), else the
environment variable ``SBRUN_DATA_ROOT``, else a :class:`DataError` that says where the
files go. Layouts under ``<root>`` (torchvision's, read with ``download=False``):

- MNIST: ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
- Fashion-MNIST: the same four names under ``FashionMNIST/raw/`` (uncompressed; on
  Debian/Ubuntu ``apt-get install dataset-fashion-mnist`` puts the ``.gz`` files in
  ``/usr/share/datasets/fashion-mnist/``: gunzip them there)
- EMNIST: ``EMNIST/raw/emnist-<split>-{train,test}-{images-idx3,labels-idx1}-ubyte``
- CelebA: the aligned JPEGs in ``celeba/img_align_celeba/`` (or ``img_align_celeba/``);
  torchvision's official layout (with its MD5-checked metadata) is used when it is
  complete, else the image folder, split by ``list_eval_partition.txt`` when present.

Pixels are mapped as ``x = u8 / 127.5 - 1``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from sbrun.data.distributions import Empirical
from sbrun.errors import ConfigError, DataError

ENV_ROOT = "SBRUN_DATA_ROOT"
_IDX = ["{p}-images-idx3-ubyte", "{p}-labels-idx1-ubyte"]
_FASHION_HINT = ("Fashion-MNIST offline: `apt-get install dataset-fashion-mnist`, then "
                 "`gunzip -c /usr/share/datasets/fashion-mnist/<file>.gz > "
                 "<root>/FashionMNIST/raw/<file>` for the four files")


class ImageSet(Empirical):
    """Images ``(n, C, H, W)`` in ``[-1, 1]`` with their labels.

    Args:
        train, test: ``(n, C, H, W)`` float tensors in ``[-1, 1]``.
        labels_train, labels_test: ``(n,)`` integer class labels (or ``None``).
        hflip: training draws (:meth:`sample`) are flipped left-right with probability
            1/2 (data augmentation; held-out rows are never flipped).
    """

    def __init__(self, train: Tensor, test: Tensor, name: str = "images",
                 labels_train: Tensor | None = None, labels_test: Tensor | None = None,
                 hflip: bool = False):
        if train.dim() != 4:
            raise DataError(f"{name}: images must be (n, C, H, W), got {tuple(train.shape)}")
        super().__init__(train, test, name)
        self.labels_train, self.labels_test = labels_train, labels_test
        self.hflip = hflip

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        x = super().sample(n, generator)
        if self.hflip:
            flip = torch.rand(n, generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x


def resolve_root(root: str | os.PathLike | None, layout: str) -> Path:
    """``root``, else ``$SBRUN_DATA_ROOT``, else a DataError saying where ``layout`` goes."""
    root = root or os.environ.get(ENV_ROOT)
    if not root:
        raise DataError(
            f"no data root: put the files at <root>/{layout} and set data.root=<root> "
            f"(or export {ENV_ROOT}=<root>); nothing is downloaded"
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"data root {path} is not a directory (expected <root>/{layout})")
    return path


def to_signed(u8: Tensor) -> Tensor:
    """``uint8 (n, H, W)`` or ``(n, C, H, W)`` -> float32 ``(n, C, H, W)`` in ``[-1, 1]``."""
    x = u8.float() / 127.5 - 1.0
    return x[:, None] if x.dim() == 3 else x


def _cap(n: int, cap: int | None, seed: int) -> Tensor:
    """Row indices: all ``n`` rows, or ``cap`` of them chosen by a seeded permutation."""
    if cap is None or cap >= n:
        return torch.arange(n)
    if cap < 2:
        raise ConfigError(f"max_train/max_test must be >= 2, got {cap}")
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:cap].sort().values


def _idx_split(cls: Callable, root: Path, folder: str, files: list[str], train: bool,
               download: bool, hint: str = "", **kw) -> tuple[Tensor, Tensor]:
    """``(images uint8 (n, H, W), labels (n,))`` from a torchvision MNIST-family class."""
    try:
        ds = cls(str(root), train=train, download=download, **kw)
    except RuntimeError:
        where = ", ".join(f"{root / folder / 'raw' / f}" for f in files)
        raise DataError(f"{folder} not found: expected {where} (uncompressed IDX files). "
                        f"{hint}".strip()) from None
    return ds.data, ds.targets


def _idx_set(name: str, load: Callable[[bool], tuple[Tensor, Tensor]], max_train: int | None,
             max_test: int | None, seed: int, transform: Callable | None = None) -> ImageSet:
    parts = []
    for train, cap in ((True, max_train), (False, max_test)):
        x, y = load(train)
        keep = _cap(x.shape[0], cap, seed + (0 if train else 1))
        x = x[keep] if transform is None else transform(x[keep])
        parts += [to_signed(x), y[keep]]
    return ImageSet(parts[0], parts[2], name, labels_train=parts[1], labels_test=parts[3])


def load_mnist(root: str | None = None, max_train: int | None = None,
               max_test: int | None = None, seed: int = 0, download: bool = False) -> ImageSet:
    """MNIST digits ``(n, 1, 28, 28)``: 60000 train / 10000 test (before caps)."""
    from torchvision.datasets import MNIST

    path = resolve_root(root, "MNIST/raw/")
    files = [f.format(p=p) for p in ("train", "t10k") for f in _IDX]
    return _idx_set("mnist", lambda tr: _idx_split(MNIST, path, "MNIST", files, tr, download),
                    max_train, max_test, seed)


def load_fashion_mnist(root: str | None = None, max_train: int | None = None,
                       max_test: int | None = None, seed: int = 0,
                       download: bool = False) -> ImageSet:
    """Fashion-MNIST ``(n, 1, 28, 28)``: 60000 train / 10000 test (before caps)."""
    from torchvision.datasets import FashionMNIST

    path = resolve_root(root, "FashionMNIST/raw/")
    files = [f.format(p=p) for p in ("train", "t10k") for f in _IDX]
    load = lambda tr: _idx_split(FashionMNIST, path, "FashionMNIST", files, tr,  # noqa: E731
                                 download, _FASHION_HINT)
    return _idx_set("fashion_mnist", load, max_train, max_test, seed)


def load_emnist(root: str | None = None, split: str = "letters", max_train: int | None = None,
                max_test: int | None = None, seed: int = 0, download: bool = False) -> ImageSet:
    """EMNIST ``(n, 1, 28, 28)``, upright like MNIST (the raw files store images transposed).

    ``split``: letters (default; labels 1..26) | byclass | bymerge | balanced | digits | mnist.
    """
    from torchvision.datasets import EMNIST

    if split not in EMNIST.splits:
        raise ConfigError(f"unknown EMNIST split '{split}'; valid: {', '.join(EMNIST.splits)}")
    path = resolve_root(root, "EMNIST/raw/")
    files = [f.format(p=f"emnist-{split}-{p}") for p in ("train", "test") for f in _IDX]
    hint = "EMNIST comes from https://www.nist.gov/itl/products-and-services/emnist-dataset " \
           "(gzip.zip: gunzip its files into <root>/EMNIST/raw/)"
    load = lambda tr: _idx_split(EMNIST, path, "EMNIST", files, tr, download,  # noqa: E731
                                 hint, split=split)
    return _idx_set(f"emnist_{split}", load, max_train, max_test, seed,
                    transform=lambda x: x.transpose(1, 2))


def mnist_class_marginals(root: str | None = None, classes: Sequence[int] = tuple(range(10)),
                          max_train: int | None = None, max_test: int | None = None,
                          seed: int = 0) -> list[ImageSet]:
    """One :class:`ImageSet` per digit class, in the order of ``classes`` (multimarginal data).

    ``max_train`` / ``max_test`` cap each class separately.
    """
    full = load_mnist(root, seed=seed)
    out = []
    for c in classes:
        if not 0 <= int(c) <= 9:
            raise ConfigError(f"mnist_classes: class {c} is not a digit 0..9")
        tr = torch.nonzero(full.labels_train == c).squeeze(1)
        te = torch.nonzero(full.labels_test == c).squeeze(1)
        tr = tr[_cap(len(tr), max_train, seed + int(c))]
        te = te[_cap(len(te), max_test, seed + 100 + int(c))]
        out.append(ImageSet(full.train[tr], full.test[te], f"mnist_{int(c)}",
                            labels_train=full.labels_train[tr], labels_test=full.labels_test[te]))
    return out


def load_celeba(root: str | None = None, size: int = 64, crop: int | None = 140,
                hflip: bool = True, max_train: int | None = None, max_test: int | None = None,
                test_fraction: float = 0.1, seed: int = 0, workers: int = 4) -> ImageSet:
    """CelebA faces ``(n, 3, size, size)``: centre crop of side ``crop`` (``None``: the
    largest square), resized to ``size`` (bicubic); random horizontal flips when ``hflip``.

    The split is the official one (train: partition 0, test: partition 2) when
    ``list_eval_partition.txt`` is available, else a seeded ``test_fraction`` split.
    Memory: 12 KB per 64x64 image as float32 (all 162770 training faces: ~8 GB).
    """
    path = resolve_root(root, "celeba/img_align_celeba/*.jpg")
    train_files, test_files = celeba_split_files(path, test_fraction, seed)
    train_files = [train_files[i] for i in _cap(len(train_files), max_train, seed)]
    test_files = [test_files[i] for i in _cap(len(test_files), max_test, seed + 1)]
    read = lambda fs: to_signed(_read_images(fs, size, crop, workers))  # noqa: E731
    return ImageSet(read(train_files), read(test_files), f"celeba{size}", hflip=hflip)


def celeba_split_files(root: Path, test_fraction: float = 0.1,
                       seed: int = 0) -> tuple[list[Path], list[Path]]:
    """``(train files, test files)`` of CelebA's aligned images under ``root``."""
    try:  # torchvision's official layout, when complete (it MD5-checks the metadata)
        from torchvision.datasets import CelebA

        split = {s: CelebA(str(root), split=s, target_type=[]).filename for s in ("train", "test")}
        folder = root / CelebA.base_folder / "img_align_celeba"
        return [folder / f for f in split["train"]], [folder / f for f in split["test"]]
    except RuntimeError:
        pass
    candidates = [root / "celeba" / "img_align_celeba", root / "img_align_celeba", root]
    folder = next((c for c in candidates if c.name == "img_align_celeba" and c.is_dir()), None)
    if folder is None:
        raise DataError(f"CelebA not found: expected the aligned JPEGs in {candidates[0]}/ or "
                        f"{candidates[1]}/ (from img_align_celeba.zip)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if len(files) < 2:
        raise DataError(f"{folder}: found {len(files)} images; need at least 2")
    partition = folder.parent / "list_eval_partition.txt"
    if partition.is_file():  # official split: 0 train, 1 valid, 2 test
        part = dict(line.split()[:2] for line in partition.read_text().splitlines() if line.strip())
        train = [f for f in files if part.get(f.name) == "0"]
        test = [f for f in files if part.get(f.name) == "2"]
        if train and test:
            return train, test
    if not 0 < test_fraction < 1:
        raise ConfigError(f"celeba test_fraction must be in (0, 1), got {test_fraction}")
    perm = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed)).tolist()
    n_test = max(1, round(test_fraction * len(files)))
    return sorted(files[i] for i in perm[n_test:]), sorted(files[i] for i in perm[:n_test])


def _read_images(files: list[Path], size: int, crop: int | None, workers: int) -> Tensor:
    """JPEG/PNG files -> uint8 ``(n, 3, size, size)`` (centre crop, then bicubic resize)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from PIL import Image

    def one(f: Path) -> np.ndarray:
        with Image.open(f) as im:
            im = im.convert("RGB")
            w, h = im.size
            side = min(w, h) if crop is None else min(crop, w, h)
            left, top = (w - side) // 2, (h - side) // 2
            im = im.crop((left, top, left + side, top + side))
            return np.asarray(im.resize((size, size), Image.BICUBIC), dtype=np.uint8)

    with ThreadPoolExecutor(max(1, workers)) as pool:  # PIL decodes without the GIL
        arrays = list(pool.map(one, files, chunksize=64))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


LOADERS: dict[str, Callable[..., ImageSet]] = {
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "emnist": load_emnist,
    "celeba": load_celeba,
}
