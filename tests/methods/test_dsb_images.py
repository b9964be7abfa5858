"""DSB on images: "DSB 1" next to "DSB k" and the FID-per-IPF-iteration figure with the
slide's N = 40 baseline line (seed 003, MNIST), on tiny MNIST-like files."""

import json

import pytest
import torch
import yaml
from conftest import REPO
from image_files import write_fake_classifier, write_mnist_like

TINY = ["+experiment=dsb_mnist_cpu", "logger=none", "model.hidden=8", "trainer.steps=3",
        "trainer.batch_size=8", "trainer.warmup=0", "trainer.checkpoint_every=0",
        "method.num_steps=3", "method.cache_size=8", "method.cache_refresh=2", "eval.n_samples=16",
        "eval.w2_points=16", "eval.fid_samples=16", "data.max_train=64", "data.max_test=32"]


def _load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("dsb_fid_curve", REPO / "scripts" / "dsb_fid_curve.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_image_panels_draws_one_labelled_grid_per_entry():
    from sbrun.plots.images import image_panels

    x = torch.rand(40, 1, 28, 28) * 2 - 1
    fig = image_panels({"a": x, "b": x[:4], "c": x}, n=36, ncol=6, title="t")
    assert [ax.get_title() for ax in fig.axes] == ["a", "b", "c"]
    h, w = fig.axes[0].images[0].get_array().shape[:2]
    assert (h, w) == (6 * 29 + 1, 6 * 29 + 1)  # 36 images of 28 px, 6 per row, 1 px padding
    assert fig.axes[1].images[0].get_array().shape[:2] == (29 + 1, 4 * 29 + 1)


@pytest.fixture(scope="module")
def dsb_run(tmp_path_factory):
    from conftest import run_cli

    tmp = tmp_path_factory.mktemp("dsb_images")
    write_mnist_like(tmp / "data", "MNIST", n=64)
    clf = write_fake_classifier(tmp / "clf.pt")
    rd = tmp / "run"
    proc = run_cli([*TINY, f"data.root={tmp / 'data'}", f"eval.classifier_path={clf}",
                    "method.ipf_iters=2"], rd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return rd, clf


def test_dsb_on_images_draws_ipf_1_next_to_the_last(dsb_run):
    rd, _ = dsb_run
    rows = [json.loads(x) for x in (rd / "metrics.jsonl").read_text().splitlines()]
    assert [r["ipf_iter"] for r in rows] == [1.0, 2.0]
    assert all(r["fid_classifier"] >= 0 for r in rows)
    assert (rd / "figures" / "ipf_first_last.png").is_file()
    assert (rd / "figures" / "eval_000001_samples.png").is_file()  # every iteration's samples


def test_fid_curve_trains_the_baseline_with_the_runs_overrides(dsb_run, monkeypatch, capsys):
    rd, _ = dsb_run
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert _load_script().main([str(rd), "--baseline-steps", "4"]) == 0
    base = rd / "baseline_n4"
    overrides = yaml.safe_load((base / ".hydra" / "overrides.yaml").read_text())
    assert "method.ipf_iters=1" in overrides and "method.num_steps=4" in overrides
    assert "method.ipf_iters=2" not in overrides and "method.num_steps=3" not in overrides
    assert any(o.startswith("data.root=") for o in overrides)  # the run's own data and sizes
    base_fid = json.loads((base / "metrics.json").read_text())["fid_classifier"]
    post = json.loads((rd / "post_metrics.json").read_text())
    assert post == {"fid_classifier_baseline": pytest.approx(base_fid), "baseline_num_steps": 4}
    assert (rd / "figures" / "fid_vs_ipf.png").is_file()
    assert "after IPF 1..2" in capsys.readouterr().out
    # a second call keeps the finished baseline (its metrics file is not rewritten)
    stamp = (base / "metrics.json").stat().st_mtime_ns
    assert _load_script().main([str(rd), "--baseline-steps", "4"]) == 0
    assert (base / "metrics.json").stat().st_mtime_ns == stamp


def test_fid_curve_refuses_a_run_without_fid_per_ipf_iteration(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "w2": 1.0, "ipf_iter": 1.0}) + "\n")
    with pytest.raises(SystemExit, match="no fid_classifier per IPF iteration"):
        _load_script().main([str(tmp_path)])
    with pytest.raises(SystemExit, match="baseline-steps must be >= 1"):
        _load_script().main([str(tmp_path), "--baseline-steps", "0"])
