"""An image run reports FID with no extra step: the FID classifier is trained on the
target's labelled training images on first use and cached in ``$SBRUN_CACHE``."""

from __future__ import annotations

import json
import sys

from reliability_helpers import REPO, SMOKE, run_sbrun


def test_image_run_reports_classifier_fid_by_default(tmp_path):
    sys.path.insert(0, str(REPO / "tests"))
    from image_files import write_fake_image_root

    root = write_fake_image_root(tmp_path / "data")
    cache = tmp_path / "cache"
    rd = tmp_path / "run"
    proc = run_sbrun(rd, *SMOKE, "data=mnist", f"data.root={root}", "model=unet", "model.hidden=8",
                     "trainer.steps=2", "solver.steps=2", "eval.n_samples=8", "eval.w2_points=8",
                     "eval.fid_samples=8", extra_env={"SBRUN_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((rd / "metrics.json").read_text())
    assert metrics["fid_classifier"] > 0 and 0 <= metrics["fid_classifier_accuracy"] <= 1
    cached = list((cache / "fid_classifiers").glob("mnist-*.pt"))
    assert len(cached) == 1
    assert str(cached[0]) in (rd / ".hydra" / "config.yaml").read_text()  # the file used
