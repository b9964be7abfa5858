"""Fixtures of the reliability suite: one finished smoke run, copied by each test that
injects a fault into it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from reliability_helpers import SMOKE, run_sbrun


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A finished flow-matching smoke run with W&B offline (never modified: copy it)."""
    rd = tmp_path_factory.mktemp("finished") / "run"
    proc = run_sbrun(rd, *SMOKE, "logger=wandb", "logger.mode=offline",
                 extra_env={"WANDB_MODE": "offline"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return rd, proc


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    """A private copy of the finished run to damage."""
    dst = tmp_path / "copy"
    shutil.copytree(finished_run[0], dst, ignore=shutil.ignore_patterns("wandb", ".sbrun.lock"))
    return dst
