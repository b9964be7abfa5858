"""scripts/multimarginal_classes.py: the digit that arrives at every class vertex of a
multimarginal MNIST run (seed 004, slide 40), on tiny MNIST-like files."""

import importlib.util
import json

import pytest
import torch
from conftest import REPO, run_cli
from image_files import write_fake_classifier, write_mnist_like

TINY = ["+experiment=mm_mnist_classes_cpu", "logger=none", "model.hidden=8", "trainer.steps=2",
        "trainer.batch_size=8", "trainer.warmup=0", "solver.steps=2", "eval.n_samples=8",
        "eval.w2_points=8", "eval.figures=false", "data.classes=[0,1,2]"]


def _script():
    spec = importlib.util.spec_from_file_location("mm_classes", REPO / "scripts" / "multimarginal_classes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def mm_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mm_classes")
    write_mnist_like(tmp / "data", "MNIST", n=60)
    rd = tmp / "run"
    proc = run_cli([*TINY, f"data.root={tmp / 'data'}"], rd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return rd, write_fake_classifier(tmp / "clf.pt")


class _Always:
    """A 'classifier' that labels every image as ``digit``."""

    def __init__(self, digit):
        self.digit = digit

    def logits(self, x):
        out = torch.zeros(x.shape[0], 10)
        out[:, self.digit] = 1.0
        return out


def test_script_writes_the_accuracy_of_every_vertex(mm_run, capsys):
    from sbrun import load_run

    rd, clf = mm_run
    mod = _script()
    run = load_run(rd)
    acc = mod.vertex_accuracy(run, _Always(1), n=5)
    assert acc == {"class_acc_0": 0.0, "class_acc_1": 1.0, "class_acc_2": 0.0,
                   "class_acc": pytest.approx(1 / 3), "min_class_acc": 0.0}
    (rd / "post_metrics.json").write_text(json.dumps({"kept": 1.0}))  # another script's numbers
    assert mod.main([str(rd), "--n", "6", "--classifier", str(clf)]) == 0
    post = json.loads((rd / "post_metrics.json").read_text())
    assert post["kept"] == 1.0 and {f"class_acc_{d}" for d in (0, 1, 2)} <= set(post)
    assert all(0 <= post[f"class_acc_{d}"] <= 1 for d in (0, 1, 2))
    assert post["min_class_acc"] == min(post[f"class_acc_{d}"] for d in (0, 1, 2))
    assert "min_class_acc" in capsys.readouterr().out


def test_script_refuses_a_run_that_is_not_multimarginal_on_digits(tmp_path, mm_run):
    with pytest.raises(SystemExit, match="--n must be >= 1"):
        _script().main([str(mm_run[0]), "--n", "0"])
    with pytest.raises(Exception, match="not a finished sbrun run"):
        _script().main([str(tmp_path), "--classifier", str(mm_run[1])])
