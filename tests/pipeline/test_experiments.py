"""Every experiment preset smoke-runs (debug=smoke); the gallery script builds an index."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sbrun.config import CONF_DIR

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
PRESETS = sorted((CONF_DIR / "experiment").glob("*.yaml"))
# Image presets sized for a GPU or a 20-minute CPU run: smaller still for a smoke run, no FID
# (no classifier file here; FID is tested in tests/metrics/test_fid.py and below).
TINY_IMAGES = ["model.hidden=8", "data.max_train=256", "data.max_test=128", "eval.n_samples=64",
               "eval.w2_points=64", "eval.fid=none", "eval.final_fid=none", "trainer.eval_every=0"]
SMOKE_EXTRA = {
    "mnist_cpu": TINY_IMAGES,
    "control_mnist_classifier": [*TINY_IMAGES, "method.base_steps=5", "trainer.steps=3",
                                 "solver.steps=3", "device=cpu"],
    "inpaint_mnist_cpu": TINY_IMAGES,
    "superres_mnist_cpu": TINY_IMAGES,
    "guidance_mnist_cpu": TINY_IMAGES,
    "dsb_mnist": [*TINY_IMAGES, "method.ipf_iters=1", "trainer.steps=5", "trainer.batch_size=16",
                  "method.cache_size=32", "method.cache_refresh=5", "device=cpu"],
    "mm_mnist_classes_cpu": ["model.hidden=8", "data.max_train=256", "data.max_test=128",
                             "eval.n_samples=64", "eval.w2_points=64"],
    "dsb_mnist_cpu": [*TINY_IMAGES, "method.ipf_iters=1", "trainer.steps=5", "trainer.batch_size=16",
                      "method.cache_size=32", "method.cache_refresh=5"],
    "dsb_emnist2mnist": [*TINY_IMAGES, "method.ipf_iters=1", "trainer.steps=5", "trainer.batch_size=16",
                         "method.cache_size=32", "method.cache_refresh=5", "device=cpu",
                         "method.num_steps=5"],
    "dsb_fashion2mnist": [*TINY_IMAGES, "method.ipf_iters=1", "trainer.steps=5",
                          "trainer.batch_size=16", "method.cache_size=32", "method.cache_refresh=5",
                          "device=cpu", "method.num_steps=5"],
}


def _gallery():
    spec = importlib.util.spec_from_file_location("gallery", REPO / "scripts" / "reproduce_figures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_preset_header_and_smoke_run(preset, tmp_path):
    meta = _gallery().parse_header(preset)  # raises on an '# Expected:' check that does not parse
    for key in ("figure", "command", "expected"):
        assert meta.get(key), f"{preset.name}: header needs '# {key.title()}: ...'"
    assert any("quick" in c.sizes for c in meta["checks"]), f"{preset.name}: no check at the quick size"
    # presets are applied after debug=smoke, so the smoke sizes are repeated as overrides
    args = [f"+experiment={preset.stem}", "debug=smoke", "trainer.steps=20", "solver.steps=5",
            "eval.n_samples=200", "eval.w2_points=200", "trainer.batch_size=64"]
    if meta.get("sweep"):  # the first value of each swept key (training sizes stay small)
        args += [kv.split(",")[0] for kv in meta["sweep"].split() if not kv.startswith("trainer.")]
    args += SMOKE_EXTRA.get(preset.stem, [])
    if "eval.classifier_path=<" in meta["command"]:  # a classifier reward: an untrained file
        from image_files import write_fake_classifier

        args.append(f"eval.classifier_path={write_fake_classifier(tmp_path / 'clf.pt')}")
    env = {**os.environ, "WANDB_MODE": "disabled"}
    if "fashion" in preset.read_text() or "emnist" in preset.read_text():  # not on every machine: fake files
        from image_files import write_fake_image_root

        args.append(f"data.root={write_fake_image_root(tmp_path / 'data')}")
    elif "mnist" in preset.read_text():
        shared = SHARED_DATA if (SHARED_DATA / "MNIST").is_dir() else None
        root = os.environ.get("SBRUN_DATA_ROOT") or shared
        if root is None:
            pytest.skip("MNIST not found: set SBRUN_DATA_ROOT or put it at <repo>/../shared/data")
        env["SBRUN_DATA_ROOT"] = str(root)
    proc = subprocess.run([sys.executable, "-m", "sbrun", *args, f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "metrics.json").exists()


def test_gallery_script_checks_and_writes_index(tmp_path):
    gallery = _gallery()
    rc = gallery.main(["--check", "--out", str(tmp_path), "--only", "eot_kantorovich_1d",
                       "--threads", "1", "--publish", str(tmp_path / "published")])
    assert rc == 0
    index = (tmp_path / "index.md").read_text()
    assert "eot_kantorovich_1d" in index and "**PASS**" in index and "pass: `max(plan_spread)" in index
    assert (tmp_path / "eot_kantorovich_1d__panel_plan.png").exists()
    assert (tmp_path / "published" / "eot_kantorovich_1d__panel_plan.png").exists()
    # the same run reused against a stricter expectation: a miss fails, nothing is published
    meta = gallery.parse_header(gallery.EXPERIMENTS / "eot_kantorovich_1d.yaml")
    meta["checks"], _ = gallery.parse_expected(["w2_ratio[method.n_plan=600] <= 1.0"])
    entry = gallery.run_preset(meta, tmp_path, full=False, timeout=600, threads=1, reuse=True)
    assert entry["reused"] and gallery.status(entry) == "FAIL"
    assert gallery.publish([entry], tmp_path, tmp_path / "none") == []


# Presets whose quick checks take under a minute each on one thread (training-free OT)
CHEAP = ["eot_barycenters", "eot_bridges_sigma", "eot_gaussian_interpolation", "eot_plans_kl",
         "eot_plans_sigma", "eot_sinkhorn_convergence"]


@pytest.mark.slow
def test_quick_checks_of_the_cheap_presets_hold(tmp_path):
    rc = _gallery().main(["--check", "--out", str(tmp_path), "--only", ",".join(CHEAP), "--threads", "1"])
    assert rc == 0, (tmp_path / "index.md").read_text()
