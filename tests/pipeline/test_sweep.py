"""Multirun summary callback, seed aggregation, and launcher configs."""

import csv
import os
import subprocess
import sys

SMOKE = ["debug=smoke", "trainer.steps=4", "eval.n_samples=64", "eval.w2_points=64",
         "eval.n_paths=4"]


def test_sweep_summary_records_failures_and_aggregates_seeds(tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "sbrun", "-m", *SMOKE, "method.blur=0,0.1,-1", "seed=0,1",
           f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "WANDB_MODE": "disabled"})
    assert proc.returncode == 1, proc.stderr[-2000:]  # a job failed, the sweep finished
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert len(rows) == 6
    assert [r["status"] for r in rows] == ["completed"] * 4 + ["failed"] * 2
    assert "method.blur must be >= 0" in rows[4]["error"]
    assert all(float(r["w2"]) > 0 for r in rows[:4])
    agg = list(csv.DictReader((sweep / "summary_by_setting.csv").open()))
    by = {a["setting"].split("method.blur=")[1].split()[0]: a for a in agg}
    assert by["0"]["completed"] == "2" and by["-1"]["completed"] == "0"
    w2s = [float(r["w2"]) for r in rows[:2]]
    assert abs(float(by["0"]["w2_mean"]) - sum(w2s) / 2) < 1e-9
    assert float(by["0"]["w2_std"]) > 0
    assert (sweep / "panel_samples.png").exists() and (sweep / "panel_trajectories.png").exists()
    assert "4/6 completed" in proc.stderr


def _cfg_hydra(*overrides):
    cmd = [sys.executable, "-m", "sbrun", "--cfg", "hydra", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_slurm_launcher_composes():
    proc = _cfg_hydra("hydra/launcher=slurm", "hydra.launcher.partition=gpu")
    assert proc.returncode == 0, proc.stderr
    assert "SlurmLauncher" in proc.stdout and "partition: gpu" in proc.stdout
    assert "array_parallelism: 32" in proc.stdout


def test_joblib_launcher_composes():
    proc = _cfg_hydra("hydra/launcher=local_parallel")
    assert proc.returncode == 0, proc.stderr
    assert "JoblibLauncher" in proc.stdout and "n_jobs: 2" in proc.stdout


def test_panel_titles_keep_only_what_differs_one_override_a_line():
    from sbrun.sweep import varying

    rows = [{"_overrides": ["+experiment=x", "data=a", "method.coupling=independent"]},
            {"_overrides": ["+experiment=x", "data=a", "method.coupling=exact_ot"]},
            {"_overrides": ["+experiment=x", "data=b", "method.coupling=exact_ot"]}]
    assert varying(rows) == ["data=a method.coupling=independent", "data=a method.coupling=exact_ot",
                             "data=b method.coupling=exact_ot"]
    assert varying(rows, sep="\n")[0] == "data=a\nmethod.coupling=independent"
    assert varying(rows[:1]) == ["(base)"]
