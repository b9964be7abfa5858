"""Image data: root resolution, real MNIST / Fashion-MNIST, EMNIST and CelebA written in
the on-disk formats torchvision reads, class marginals, and every image data config.

``write_fake_image_root(root)`` writes tiny MNIST / FashionMNIST / EMNIST / CelebA files,
enough for any image data config to build (``data.root=<root>``).
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sbrun.data.images import (
    ENV_ROOT,
    ImageSet,
    load_celeba,
    load_emnist,
    load_fashion_mnist,
    load_mnist,
    mnist_class_marginals,
)
from sbrun.errors import DataError

REPO = Path(__file__).resolve().parents[2]
FASHION_DEB = Path("/usr/share/datasets/fashion-mnist")
from image_files import (  # noqa: E402  (tests/ helper module)
    IMAGE_CONFIGS,
    write_celeba,
    write_emnist,
    write_fake_image_root,
    write_mnist_like,
)


def shared_mnist_root() -> Path | None:
    """``$SBRUN_DATA_ROOT`` or ``<repo>/../shared/data`` when it holds ``MNIST/raw``."""
    for root in (os.environ.get(ENV_ROOT), REPO.parent / "shared" / "data"):
        if root and (Path(root) / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file():
            return Path(root)
    return None


needs_mnist = pytest.mark.skipif(shared_mnist_root() is None, reason=(
    "real MNIST not found: set SBRUN_DATA_ROOT or put it at <repo>/../shared/data/MNIST/raw"))


def test_root_from_env_or_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_ROOT, raising=False)
    with pytest.raises(DataError, match=r"data\.root.*SBRUN_DATA_ROOT"):
        load_mnist(None)
    with pytest.raises(DataError, match=r"MNIST/raw/train-images-idx3-ubyte"):
        load_mnist(str(tmp_path))
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        load_fashion_mnist(str(tmp_path))
    write_mnist_like(tmp_path, "MNIST")
    monkeypatch.setenv(ENV_ROOT, str(tmp_path))
    assert load_mnist(None).train.shape == (20, 1, 28, 28)


def test_fake_idx_scaling_and_caps(tmp_path):
    write_mnist_like(tmp_path, "MNIST", n=30)
    d = load_mnist(str(tmp_path), max_train=12, max_test=5)
    assert isinstance(d, ImageSet) and d.shape == (1, 28, 28)
    assert d.train.shape == (12, 1, 28, 28) and d.test.shape == (5, 1, 28, 28)
    assert d.train.dtype == torch.float32 and len(d.labels_train) == 12
    assert d.train.min() == -1 and d.train.max() == 1  # 0 -> -1, 255 -> 1


@needs_mnist
def test_real_mnist_shapes_and_range():
    d = load_mnist(str(shared_mnist_root()), max_train=1000)
    assert d.train.shape == (1000, 1, 28, 28) and d.test.shape == (10000, 1, 28, 28)
    assert d.train.min() == -1 and d.train.max() == 1
    assert -0.9 < d.test.mean() < -0.6  # mostly black background
    assert set(d.labels_test.tolist()) == set(range(10))


@needs_mnist
def test_mnist_class_marginals():
    ms = mnist_class_marginals(str(shared_mnist_root()), classes=[3, 7], max_train=50,
                               max_test=20)
    assert [m.name for m in ms] == ["mnist_3", "mnist_7"]
    for m, c in zip(ms, (3, 7)):
        assert m.train.shape == (50, 1, 28, 28) and m.test.shape == (20, 1, 28, 28)
        assert (m.labels_train == c).all() and (m.labels_test == c).all()


@pytest.mark.skipif(not FASHION_DEB.is_dir(), reason=(
    "Fashion-MNIST not installed: apt-get install dataset-fashion-mnist"))
def test_real_fashion_mnist_from_the_debian_files(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in FASHION_DEB.glob("*-ubyte.gz"):
        with gzip.open(gz) as src, open(raw / gz.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    d = load_fashion_mnist(str(tmp_path), max_train=500, max_test=500)
    assert d.train.shape == (500, 1, 28, 28) and d.test.shape == (500, 1, 28, 28)
    assert d.train.min() == -1 and d.train.max() == 1


def test_emnist_layout_and_orientation(tmp_path):
    upright = np.zeros((4, 28, 28), np.uint8)
    upright[:, :5, :] = 255  # a bar along the top: transposed it would be on the left
    write_emnist(tmp_path, {"train": upright, "test": upright[:2]})
    d = load_emnist(str(tmp_path))
    assert d.name == "emnist_letters" and d.train.shape == (4, 1, 28, 28)
    assert (d.train[:, 0, :5] == 1).all() and (d.train[:, 0, 5:] == -1).all()
    assert d.labels_train.min() >= 1  # letters are labelled 1..26
    with pytest.raises(DataError, match="emnist-balanced-train-images-idx3-ubyte"):
        load_emnist(str(tmp_path), split="balanced")


def test_celeba_image_folder_crop_resize_and_flips(tmp_path):
    write_celeba(tmp_path, n=10)
    d = load_celeba(str(tmp_path), size=32, test_fraction=0.2)
    assert d.train.shape == (8, 3, 32, 32) and d.test.shape == (2, 3, 32, 32)
    assert d.train.min() >= -1 and d.train.max() <= 1
    assert (d.test[:, :, :, :12].mean() > 0) and (d.test[:, :, :, -12:].mean() < -0.5)
    x = d.sample(400, torch.Generator().manual_seed(0))
    flipped = (x[:, :, :, -12:].mean((1, 2, 3)) > 0).float().mean()
    assert 0.35 < flipped < 0.65  # about half the draws are mirrored
    assert not load_celeba(str(tmp_path), size=32, hflip=False).hflip


def test_celeba_official_partition_and_missing_folder(tmp_path):
    write_celeba(tmp_path, n=6, partition=True)
    d = load_celeba(str(tmp_path), size=16, crop=None)
    assert d.train.shape == (4, 3, 16, 16) and d.test.shape == (2, 3, 16, 16)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="img_align_celeba"):
        load_celeba(str(empty), size=16)


@pytest.mark.parametrize("option", IMAGE_CONFIGS)
def test_every_image_config_builds_on_a_fake_root(option, tmp_path):
    from conftest import compose

    from sbrun.pipeline.build import build

    root = write_fake_image_root(tmp_path)
    cfg = compose(["debug=smoke", f"data={option}", f"data.root={root}", "model=unet"])
    c = build(cfg)
    x0, x1 = c.data.batch(4, torch.Generator().manual_seed(0))
    assert x1.shape[1:] == c.problem.shape and x1.dim() == 4 and x0.shape == x1.shape
    assert x1.min() >= -1 and x1.max() <= 1
    if option == "mnist_classes":
        assert len(c.problem.extra["marginals"]) == 3
        assert c.problem.target is c.problem.extra["marginals"][0]
    t = torch.rand(4)
    assert next(iter(c.nets.values()))(x1, t).shape[-3:] == x1.shape[1:]


def test_image_grid_and_rows_are_figures_of_the_right_size():
    from matplotlib.figure import Figure

    from sbrun.plots.images import image_grid, image_rows, tile

    x = torch.rand(10, 3, 8, 8) * 2 - 1
    assert tile(x, nrow=4).shape == (3 * 9 + 1, 4 * 9 + 1, 3)
    assert tile(torch.full((2, 1, 4, 4), 5.0), nrow=8).max() == 1  # clipped to [-1, 1]
    fig = image_grid(x, nrow=4, title="t")
    assert isinstance(fig, Figure) and fig.axes[0].get_title() == "t"
    rows = image_rows({"a": x, "b": x[:3]}, n=4)
    assert [ax.get_title(loc="left") for ax in rows.axes] == ["a", "b"]
