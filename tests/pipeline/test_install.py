"""The config tree is the top-level ``conf/``, installed as the package ``sbrun.conf``: a
source checkout, an editable install and a wheel all find every config group."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sbrun.config import CONF_DIR

REPO = Path(__file__).resolve().parents[2]
GROUPS = ["data", "debug", "eval", "experiment", "hydra/launcher", "logger", "method", "model",
          "sde", "solver", "trainer"]


def yaml_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*.yaml")}


def test_conf_dir_is_the_top_level_tree_with_every_group():
    assert CONF_DIR == REPO / "conf"
    assert (CONF_DIR / "config.yaml").is_file() and (CONF_DIR / "__init__.py").is_file()
    groups = {p.parent.relative_to(CONF_DIR).as_posix() for p in CONF_DIR.rglob("*.yaml")} - {"."}
    assert groups == set(GROUPS)  # a new group is added here, and so checked in the wheel below


def test_pyproject_installs_every_package_and_the_conf_tree():
    tomllib = pytest.importorskip("tomllib")
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    code = {p.parent.relative_to(REPO).as_posix().replace("/", ".")
            for top in ("sbrun", "hydra_plugins") for p in (REPO / top).rglob("*.py")
            if "__pycache__" not in p.parts}
    assert set(tool["packages"]) == code | {"sbrun.conf", "hydra_plugins"}
    assert tool["package-dir"] == {"sbrun.conf": "conf"}
    assert tool["package-data"] == {"sbrun.conf": ["**/*.yaml"]}


def test_wheel_holds_every_config_and_composes_each_group_outside_the_repo(tmp_path):
    """A non-editable install: build the wheel from a copy of the sources, install it into a
    directory of its own, and compose one option of every group from elsewhere."""
    src = tmp_path / "src"
    for name in ("sbrun", "conf", "hydra_plugins"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist")], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("sbrun-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    in_wheel = {n.removeprefix("sbrun/conf/") for n in names
                if n.startswith("sbrun/conf/") and n.endswith(".yaml")}
    assert in_wheel == yaml_files(CONF_DIR)
    assert "sbrun/conf/__init__.py" in names and "sbrun/cli.py" in names

    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True,
                   capture_output=True, cwd=tmp_path)
    options = {g: sorted((CONF_DIR / g).glob("*.yaml"))[0].stem for g in GROUPS}
    overrides = [f"+{g}={o}" if g == "experiment" else f"{g}={o}" for g, o in options.items()]
    code = ("import sys; from sbrun.config import CONF_DIR, compose; print(CONF_DIR); "
            "[compose([o], return_hydra_config=o.startswith('hydra')) for o in sys.argv[1:]]")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code, *overrides], capture_output=True, text=True,
                         env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == site / "sbrun" / "conf"
    job = subprocess.run([sys.executable, "-m", "sbrun", "--cfg", "job", "method=dsb"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert job.returncode == 0, job.stderr
    assert "_target_: sbrun.methods.dsb.DSB" in job.stdout


def test_runs_land_in_outputs_which_tracks_only_its_readme():
    from omegaconf import OmegaConf

    from sbrun.config import compose

    hydra = OmegaConf.to_container(compose(return_hydra_config=True).hydra, resolve=False)
    assert hydra["run"]["dir"].startswith("outputs/${now:")
    assert hydra["sweep"]["dir"].startswith("outputs/multirun/${now:")
    assert (REPO / "outputs" / "README.md").is_file()
    if (REPO / ".git").exists() and shutil.which("git"):  # a source checkout
        ignored = subprocess.run(["git", "check-ignore", "-q", "outputs/2026-01-01/run.log"],
                                 cwd=REPO).returncode == 0
        tracked = subprocess.run(["git", "check-ignore", "-q", "outputs/README.md"],
                                 cwd=REPO).returncode == 1
        assert ignored and tracked
