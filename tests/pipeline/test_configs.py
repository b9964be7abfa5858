"""Every option of every config group composes, and instantiates through build()."""

from pathlib import Path

import pytest
from conftest import CONF, compose
from image_files import IMAGE_CONFIGS, write_fake_image_root
from omegaconf import OmegaConf

GROUPS = ["data", "sde", "method", "solver", "model", "trainer", "eval", "logger"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def all_options():
    return [(g, o) for g in GROUPS for o in options(g)]


@pytest.mark.parametrize("group, option", all_options())
def test_every_option_composes_and_builds(group, option, tmp_path):
    from sbrun.pipeline.build import build

    overrides = ["debug=smoke", f"{group}={option}"]
    if group == "data" and option == "npz":
        import numpy as np

        np.savez(tmp_path / "t.npz", x=np.random.default_rng(0).normal(size=(50, 2)))
        overrides.append(f"data.target_path={tmp_path / 't.npz'}")
    if (group == "data" and option in IMAGE_CONFIGS) or (group, option) == ("model", "unet"):
        overrides.append(f"data.root={write_fake_image_root(tmp_path)}")
        if group == "model":
            overrides.append("data=mnist")
    cfg = compose(overrides)
    assert OmegaConf.select(cfg, group) is not None
    c = build(cfg)
    assert c.problem.shape and len(c.nets) == len(c.method.networks)


def test_typed_schema_rejects_wrong_types():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        compose(["trainer.steps=abc"])
    with pytest.raises(ConfigCompositionException):
        compose(["trainer.stpes=3"])


def test_every_config_file_has_a_comment_or_schema():
    """Config keys that are a sigma or an epsilon say which one they are."""
    for path in Path(CONF).rglob("*.yaml"):
        for line in path.read_text().splitlines():
            key = line.split(":")[0].strip()
            if key in ("sigma", "epsilon", "coupling_sigma", "eps"):
                assert "#" in line, f"{path.name}: '{key}' needs a comment saying which it is"


@pytest.mark.parametrize("method, new", [("ddpm", "chain_steps"), ("dsb", "horizon")])
def test_method_T_was_renamed_and_old_runs_still_load(method, new):
    """``method.T`` (DDPM's chain length, DSB's horizon) is a one-line error naming the new
    key; a config saved with ``T`` is read with the new name (``sbrun-transport``)."""
    from sbrun.config import removed_option, upgrade_saved
    from sbrun.errors import ConfigError
    from sbrun.pipeline.build import make

    assert f"method.{new} ({method}" in removed_option(["method.T=5"])
    with pytest.raises(ConfigError, match=f"method.{new}") as e:
        make("method", compose([f"method={method}", "+method.T=5"]).method)
    assert "\n" not in str(e.value)
    saved = OmegaConf.create(OmegaConf.to_container(compose([f"method={method}"]).method))
    value = saved.pop(new) * 2
    saved.T = value  # what a run saved before the rename holds
    run = OmegaConf.create({"method": saved})
    upgrade_saved(run)
    assert "T" not in run.method
    built = make("method", run.method)
    assert getattr(built, new) == value
