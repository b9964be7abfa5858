"""Item 9 and the cluster path: a sweep through Hydra's submitit launcher (local executor,
the code path of SLURM) where one value is rejected at composition; the summary has a
failed row for it and the other job completed."""

from __future__ import annotations

import csv

import pytest
from reliability_helpers import SMOKE, run_sbrun


def test_item9_submitit_local_sweep_with_a_rejected_value(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    proc = run_sbrun(None, "-m", *SMOKE, "hydra/launcher=submitit_local", "trainer.steps=4,abc",
                     f"hydra.sweep.dir={sweep}", timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]  # a job failed, the sweep finished
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [r["job"] for r in rows] == ["0", "1"]
    assert [r["status"] for r in rows] == ["completed", "failed"]
    assert "trainer.steps=abc" in rows[1]["error"] and "Integer" in rows[1]["error"]
    assert float(rows[0]["w2"]) > 0 and rows[0]["steps"] == "4"
    assert list((sweep / ".submitit").glob("*/*_0_log.out"))  # it really went through submitit
    assert "1/2 completed" in proc.stderr + proc.stdout
