"""Helpers of the reliability suite: run ``sbrun`` / ``sbrun-transport`` as a user does (this
checkout on ``PYTHONPATH``), assert one-line errors, hash run directories; and its fixtures
(one finished smoke run, copied by each test that injects a fault into it), registered by
``pytest_plugins = ["reliability_helpers"]`` in the test modules (a conftest.py here would
shadow tests/conftest.py's module name)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMOKE = ["debug=smoke", "logger=none", "trainer.threads=1", "eval.figures=false"]


def _root_conftest():
    """tests/conftest.py as a module (this directory's conftest.py shadows its name)."""
    spec = importlib.util.spec_from_file_location("sbrun_tests_conftest", REPO / "tests" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compose = _root_conftest().compose


def env(**extra) -> dict:
    e = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", **extra}
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return e


def run_sbrun(run_dir: Path | None, *args: str, timeout: int = 300, extra_env=None):
    """``python -m sbrun`` (this checkout) with ``hydra.run.dir=run_dir``."""
    cmd = [sys.executable, "-m", "sbrun", *args]
    if run_dir is not None:
        cmd.insert(3, f"hydra.run.dir={run_dir}")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=env(**(extra_env or {})), cwd=REPO)


def transport(*args: str, timeout: int = 300):
    cmd = [sys.executable, "-m", "sbrun.transport", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env(), cwd=REPO)


def one_line_error(proc, prog: str = "sbrun") -> str:
    """Assert the process failed with exit code 2 and exactly one error line, no traceback;
    returns that line."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"{prog}: error:")]
    assert len(lines) == 1, proc.stderr[-2000:]
    return lines[0]


def digest(run_dir: Path) -> dict[str, str]:
    """sha256 of every file of a run (the lock file and logs aside)."""
    out = {}
    for p in sorted(run_dir.rglob("*")):
        if p.is_file() and p.name not in (".sbrun.lock", "run.log"):
            out[str(p.relative_to(run_dir))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


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
