"""The gallery index: a run's cost is recorded beside it, and checks.md keeps the rows of
presets an ``--only`` invocation did not run."""

import importlib.util
import json
import sys
from pathlib import Path

from sbrun.expected import RunResults, evaluate, parse_expected

REPO = Path(__file__).resolve().parents[2]


def _index():
    sys.path.insert(0, str(REPO / "scripts"))
    spec = importlib.util.spec_from_file_location("gallery_index", REPO / "scripts" / "gallery_index.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _entry(name, w2_ratio, timing=None, reused=False):
    checks, _ = parse_expected(["w2_ratio <= 1.5"])
    outcomes = [evaluate(c, RunResults(final={"w2_ratio": w2_ratio}), "full") for c in checks]
    return {"name": name, "size": "full", "seconds": 12.0, "ok": True, "error": "", "reused": reused,
            "images": [], "metrics": {"w2_ratio": w2_ratio}, "outcomes": outcomes, "skipped": "",
            "timing": timing or {}}


def test_timing_is_recorded_and_read_back(tmp_path):
    gi = _index()
    rec = gi.record_timing(tmp_path, wall=12.34, cpu=20.0, size="full", threads=1)
    assert json.loads((tmp_path / gi.TIMING).read_text()) == rec == gi.read_timing(tmp_path)
    assert rec["cpu_seconds"] == 20.0 and rec["wall_seconds"] == 12.3
    text = gi.describe_cost(_entry("a", 1.0, rec, reused=True))
    assert text.startswith("reused: ") and "20 s CPU" in text and rec["measured"] in text
    assert gi.read_timing(tmp_path / "missing") == {}


def test_checks_md_accumulates_across_only_runs(tmp_path):
    gi = _index()
    dest = tmp_path / "gallery"
    dest.mkdir()
    old = ["| preset | status | checks |", "|---|---|---|", "| [d_old](#d_old) | PASS | x |"]
    (dest / "checks.md").write_text("\n".join(old))
    gi.publish([_entry("b_preset", 1.2), _entry("c_preset", 3.0)], tmp_path, dest)
    gi.publish([_entry("a_preset", 1.1), _entry("c_preset", 1.4)], tmp_path, dest)
    rows = [x for x in (dest / "checks.md").read_text().splitlines() if x.startswith("| [")]
    assert [r.split("]")[0][3:] for r in rows] == ["a_preset", "b_preset", "c_preset", "d_old"]
    assert rows[3].endswith("| not recorded (earlier session) |")  # an old 3-column row, padded
    assert "PASS" in rows[2] and "1.4" in rows[2]  # the newer c_preset row replaced the failing one
    assert gi.status(_entry("x", 3.0)) == "FAIL" and gi.passed(_entry("x", 1.0))
