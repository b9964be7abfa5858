"""scripts/diffusion_figures.py's seed-001 additions: VE vs VP noising and the NLL per solver."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from conftest import compose
from test_score_sde import COV, F64, MEAN, oracle

from sbrun.sde import VE, VP
from sbrun.sde.noising import gaussian_marginal

REPO = Path(__file__).resolve().parents[2]


def _script(name):
    sys.path.insert(0, str(REPO / "scripts"))
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ve_vp_std_curves_are_their_closed_forms():
    post = _script("diffusion_post")
    sdes = post.noising_sdes()  # conf/sde/ve.yaml and vp.yaml
    ve, vp = sdes["ve"], sdes["vp"]
    assert isinstance(ve, VE) and isinstance(vp, VP)
    s = torch.linspace(0, 1, 11, dtype=F64)
    _, sig, total = post.std_curves(ve, s, data_var=0.7)
    closed = ve.sigma_min * ((ve.sigma_max / ve.sigma_min) ** (2 * s) - 1).sqrt()
    torch.testing.assert_close(sig, closed)
    torch.testing.assert_close(total, (0.7 + closed**2).sqrt())  # VE: alpha = 1
    assert total[-1] > 0.95 * ve.sigma_max  # the variance explodes
    alpha, sig, total = post.std_curves(vp, s, data_var=1.0)
    log_a = -0.5 * (vp.beta_min * s + 0.5 * (vp.beta_max - vp.beta_min) * s**2)
    torch.testing.assert_close(alpha, log_a.exp())
    torch.testing.assert_close(sig, (1 - (2 * log_a).exp()).sqrt())
    torch.testing.assert_close(total, torch.ones_like(s))  # unit-variance data: preserved
    # the drawn clouds have the closed-form std (2000 points: a few percent)
    x0 = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0), dtype=F64) * 0.5 + 1
    for sde in (ve, vp):
        clouds = post.noised(sde, x0, [0.3, 0.9], torch.Generator().manual_seed(1))
        expected = post.std_curves(sde, torch.tensor([0.3, 0.9]), float(x0.var(0).mean()))[2]
        got = clouds.var(1).mean(-1).sqrt()
        torch.testing.assert_close(got, expected, rtol=0.05, atol=0)


def test_ve_vs_vp_figure_has_two_rows_and_two_side_panels():
    from matplotlib.figure import Figure

    post = _script("diffusion_post")
    x0 = torch.randn(200, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    fig = post.ve_vs_vp(x0, post.noising_sdes(), "gauss", n_paths=3, steps=40)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2 * len(post.VE_VP_TIMES) + 2
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert any(lab.startswith("VE: sigma_min=") for lab in labels)
    assert any(lab.startswith("VP (linear): beta_min=") for lab in labels)


@pytest.mark.parametrize("spec, keys", [("dopri5:1e-5", {"rtol": 1e-5, "atol": 1e-5}),
                                        ("rk4:25", {"steps": 25})])
def test_nll_spec_parses(spec, keys):
    post = _script("diffusion_post")
    assert post.parse_nll(spec) == {"scheme": spec.split(":")[0], **keys}
    assert post.metric_key(spec) in ("nll_dopri5_1em5", "nll_rk4_25")


def test_nll_table_of_the_exact_score_is_the_gaussian_nll():
    """Gaussian data, the exact score: every converged solver gives the closed-form NLL."""
    post = _script("diffusion_post")
    sde = VP()
    method, nets = oracle(sde)
    m0, c0 = gaussian_marginal(sde, MEAN, COV, sde.s_min)
    x = m0 + torch.randn(100, 2, generator=torch.Generator().manual_seed(2), dtype=F64) \
        @ torch.linalg.cholesky(c0).T
    rows = post.nll_table(method, nets, x, ["dopri5:1e-3", "dopri5:1e-6", "rk4:100", "euler:20"],
                          reference="dopri5:1e-6")
    exact = -torch.distributions.MultivariateNormal(m0, c0).log_prob(x).mean().item()
    by = {r["solver"]: r for r in rows}
    assert abs(by["dopri5:1e-6"]["nll"] - exact) < 5e-3  # the prior N(0, I) ~ p_1
    assert abs(by["rk4:100"]["dnll"]) < 5e-4 and by["rk4:100"]["nfe"] == 400
    assert by["dopri5:1e-6"]["dnll"] == 0.0 and by["euler:20"]["nfe"] == 20
    assert abs(by["euler:20"]["dnll"]) > abs(by["rk4:100"]["dnll"])  # a coarse Euler is off
    assert "| rk4:100 |" in post.markdown(rows)


def test_nll_per_solver_of_a_trained_run(tmp_path):
    """A 10-step run: finite NLLs; dopri5 at tight tolerance agrees with a fine rk4."""
    from sbrun.metrics.pairs import heldout_halves
    from sbrun.pipeline.build import build
    from sbrun.pipeline.trainer import Trainer

    cfg = compose(["debug=smoke", "logger=none", "trainer.threads=1", "trainer.steps=10",
                   "method=score-sde", "data=moons", "solver=euler_maruyama",
                   "method.nll_points=40"])
    c = build(cfg)
    Trainer(cfg.trainer, c.method, c.nets, c.data, tmp_path, c.device, cfg.seed).fit()
    figures = _script("diffusion_figures")
    specs = ["dopri5:1e-3", "dopri5:1e-5", "euler:10", "rk4:50"]
    rows = figures.solver_nll(tmp_path, cfg, c, None, specs)
    assert all(math.isfinite(r["nll"]) and r["nfe"] > 0 for r in rows)
    by = {r["solver"]: r for r in rows}
    assert abs(by["rk4:50"]["nll"] - by["dopri5:1e-5"]["nll"]) < 2e-3
    # the run's own metric (here at rtol = atol = 1e-3): the same held-out points
    c.method.nll_rtol = c.method.nll_atol = 1e-3
    target = heldout_halves(c.data.target, cfg.eval.n_samples, cfg.seed)[0]
    assert by["dopri5:1e-3"]["nll"] == pytest.approx(c.method.metrics(c.nets, None, None,
                                                                      target)["nll"], abs=1e-6)
    post = json.loads((tmp_path / "post_metrics.json").read_text())
    assert post["nll_rk4_50"] == by["rk4:50"]["nll"]
    assert post["nll_solver_gap"] == pytest.approx(abs(by["rk4:50"]["dnll"]))
    assert (tmp_path / "figures" / "nll_solvers.png").is_file()
    assert len(json.loads((tmp_path / "nll_solvers.json").read_text())) == len(specs)
