"""Shared fixtures: compose configs with Hydra's compose API, run the CLI in-process."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from sbrun.config import CONF_DIR as CONF  # noqa: F401 (tests read the config tree here)
from sbrun.config import compose  # noqa: F401 (the tests' compose)

torch.set_num_threads(1)
pytest.register_assert_rewrite("reliability_helpers")  # tests/reliability's helpers and fixtures

os.environ.setdefault("WANDB_MODE", "disabled")
# one thread per process: the suite runs many small ops and CLI subprocesses on 2 cores,
# where competing OpenMP threads make small kernels many times slower
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_SILENT", "true")
# what sbrun caches on first use (the FID classifier) goes to a temporary directory
os.environ.setdefault("SBRUN_CACHE", tempfile.mkdtemp(prefix="sbrun-test-cache-"))

REPO = Path(__file__).resolve().parents[1]
SMOKE = ["debug=smoke", "logger=none"]


def run_cli(args: list[str], tmp_path: Path, timeout: int = 300, env=None):
    """Run ``python -m sbrun <args>`` with its run dir in ``tmp_path``; returns the process."""
    full_env = {**os.environ, "WANDB_MODE": "disabled", **(env or {})}
    # the subprocess imports this checkout's sbrun, whatever is pip-installed
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "sbrun", f"hydra.run.dir={tmp_path}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=tmp_path.parent)


@pytest.fixture
def cli(tmp_path):
    """``cli(*args)`` -> (CompletedProcess, run_dir)."""
    counter = {"n": 0}

    def _run(*args, run_dir: Path | None = None, **kw):
        counter["n"] += 1
        rd = run_dir or tmp_path / f"run{counter['n']}"
        return run_cli(list(args), rd, **kw), rd

    return _run
