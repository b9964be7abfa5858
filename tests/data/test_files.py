"""User ``.npz`` point clouds: loading, seeded splits, pairing and error messages."""

import numpy as np
import pytest
import torch

from sbrun.data import Empirical, load_npz, load_paired_npz
from sbrun.errors import ConfigError, DataError


def _save(path, **arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


def _rows(x: torch.Tensor) -> set:
    return {tuple(r) for r in x.reshape(x.shape[0], -1).tolist()}


def test_load_split_and_determinism(tmp_path):
    x = np.random.default_rng(0).normal(size=(50, 3))
    path = _save(tmp_path / "cloud.npz", x=x)
    e = load_npz(path, seed=1)
    assert isinstance(e, Empirical) and e.name == "cloud" and e.shape == (3,)
    assert e.train.shape == (40, 3) and e.test.shape == (10, 3)
    assert e.train.dtype == torch.float32
    assert _rows(torch.cat([e.train, e.test])) == _rows(torch.from_numpy(x).float())
    assert not _rows(e.train) & _rows(e.test)
    torch.testing.assert_close(load_npz(path, seed=1).test, e.test, rtol=0, atol=0)
    assert not torch.equal(load_npz(path, seed=2).test, e.test)


def test_key_name_fraction_and_image_shape(tmp_path):
    imgs = np.arange(20 * 2 * 4 * 4, dtype=np.uint8).reshape(20, 2, 4, 4)
    path = _save(tmp_path / "imgs.npz", images=imgs)
    e = load_npz(path, key="images", test_fraction=0.25, name="mine")
    assert e.name == "mine" and e.shape == (2, 4, 4)
    assert e.train.shape == (15, 2, 4, 4) and e.test.shape == (5, 2, 4, 4)


def test_npy_file(tmp_path):
    path = tmp_path / "pts.npy"
    np.save(path, np.ones((10, 2)))
    assert load_npz(str(path)).train.shape == (8, 2)


def _error(path, **kw) -> str:
    with pytest.raises(DataError) as e:
        load_npz(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_missing_file(tmp_path):
    assert _error(str(tmp_path / "nope.npz")).endswith("nope.npz: no such file")


def test_missing_key_lists_arrays(tmp_path):
    path = _save(tmp_path / "a.npz", data=np.ones((4, 2)), labels=np.arange(4))
    msg = _error(path)
    assert "no array 'x'" in msg and "data" in msg and "labels" in msg


def test_empty(tmp_path):
    assert "empty" in _error(_save(tmp_path / "e.npz", x=np.zeros((0, 2))))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite(tmp_path, bad):
    x = np.ones((6, 2))
    x[3, 1] = bad
    assert "NaN/inf" in _error(_save(tmp_path / "n.npz", x=x))


def test_one_dimensional(tmp_path):
    msg = _error(_save(tmp_path / "v.npz", x=np.arange(5.0)))
    assert "(5,)" in msg and "(n, d)" in msg


def test_not_an_npz(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_text("hello")
    assert "not a readable" in _error(str(path))


def test_non_numeric(tmp_path):
    assert "non-numeric" in _error(_save(tmp_path / "s.npz", x=np.array([["a", "b"]] * 3)))


def test_bad_fraction_and_too_few_rows(tmp_path):
    path = _save(tmp_path / "ok.npz", x=np.ones((5, 2)))
    with pytest.raises(ConfigError):
        load_npz(path, test_fraction=1.0)
    assert "at least 2" in _error(_save(tmp_path / "one.npz", x=np.ones((1, 2))))


def test_paired_rows_stay_aligned(tmp_path):
    src = np.random.default_rng(1).normal(size=(30, 2))
    ps = _save(tmp_path / "src.npz", x=src)
    pt = _save(tmp_path / "tgt.npz", x=2.0 * src + 1.0)
    s, t = load_paired_npz(ps, pt, seed=5)
    assert s.train.shape == t.train.shape == (24, 2)
    torch.testing.assert_close(t.train, 2.0 * s.train + 1.0)
    torch.testing.assert_close(t.test, 2.0 * s.test + 1.0)
    torch.testing.assert_close(s.test, load_npz(ps, seed=5).test, rtol=0, atol=0)


def test_paired_length_mismatch(tmp_path):
    ps = _save(tmp_path / "s.npz", x=np.ones((10, 2)))
    pt = _save(tmp_path / "t.npz", x=np.ones((11, 2)))
    with pytest.raises(DataError, match="10 rows.*11"):
        load_paired_npz(ps, pt)
