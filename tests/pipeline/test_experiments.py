"""Every experiment preset smoke-runs (debug=smoke); the gallery script builds an index."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRESETS = sorted((REPO / "sbrun" / "conf" / "experiment").glob("*.yaml"))


def _gallery():
    spec = importlib.util.spec_from_file_location("gallery", REPO / "scripts" / "reproduce_figures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_preset_header_and_smoke_run(preset, tmp_path):
    meta = _gallery().parse_header(preset)
    for key in ("figure", "command", "expected"):
        assert meta.get(key), f"{preset.name}: header needs '# {key.title()}: ...'"
    args = [f"+experiment={preset.stem}", "debug=smoke"]
    if meta.get("sweep"):
        first = [kv.split(",")[0] for kv in meta["sweep"].split()]
        args += first
    proc = subprocess.run([sys.executable, "-m", "sbrun", *args, f"hydra.run.dir={tmp_path}"],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "WANDB_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "metrics.json").exists()


def test_gallery_script_writes_index(tmp_path):
    gallery = _gallery()
    rc = gallery.main(["--out", str(tmp_path), "--only", "fm_swissroll2scurve", "--timeout", "600"])
    assert rc == 0
    index = (tmp_path / "index.md").read_text()
    assert "fm_swissroll2scurve" in index and "status: ok" in index
    assert any(tmp_path.glob("fm_swissroll2scurve__*.png"))
