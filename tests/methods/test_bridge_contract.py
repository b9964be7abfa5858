"""The reference contract (issue 13): every bridge method reads sigma from ``sde`` alone,
declares what it is (``uses_reference``, ``stochastic``, ``bridge_sigma``), and a sweep
over ``sde.sigma`` changes what it learns."""

import subprocess
import sys

import numpy as np
import pytest

from sbrun.data.distributions import Problem, StandardGaussian
from sbrun.methods.dsb import DSB
from sbrun.methods.dsbm import DSBM
from sbrun.methods.eot import EOT
from sbrun.methods.flow_matching import FlowMatching
from sbrun.methods.lightsb import LightSB
from sbrun.methods.multimarginal import Multimarginal
from sbrun.methods.stochastic_interpolant import StochasticInterpolant
from sbrun.sde import VP, Brownian

SMOKE = ["debug=smoke", "logger=none", "data=gaussian2gaussian", "eval.n_samples=64",
         "eval.w2_points=64", "eval.n_paths=0", "eval.figures=false"]
BRIDGES = {
    "eot": [],
    "dsb": ["method.ipf_iters=1", "method.num_steps=10", "method.cache_size=64",
            "method.cache_refresh=10"],
    "flow-matching": ["method.coupling=entropic_ot", "solver=euler_maruyama"],
    "stochastic-interpolant": ["method.coupling=entropic_ot", "solver=euler_maruyama"],
    "lightsb": ["method.n_components=4"],
    "dsbm": ["method.imf_iters=1", "method.num_steps=10", "method.cache_size=64",
             "method.cache_refresh=10"],
}


def test_declared_capabilities():
    prob = Problem("g", StandardGaussian((2,)), StandardGaussian((2,)))
    for method in (EOT(), DSB(), FlowMatching(coupling="entropic_ot"),
                   StochasticInterpolant(coupling="entropic_ot"), LightSB(), DSBM()):
        method.bind(prob, Brownian(0.7))
        assert method.uses_reference and method.stochastic, method.name
        assert method.bridge_sigma() == 0.7, method.name
    dsb_vp = DSB()
    dsb_vp.bind(prob, VP())
    assert dsb_vp.bridge_sigma() is None  # a noising reference: no Gaussian closed form here
    assert Multimarginal.uses_reference is False
    flow = FlowMatching(coupling="exact_ot")
    flow.bind(prob, Brownian(0.7))
    assert not flow.uses_reference and not flow.stochastic and flow.bridge_sigma() is None


@pytest.mark.parametrize("method", sorted(BRIDGES))
def test_a_sweep_over_sde_sigma_changes_every_bridge_method(method, tmp_path):
    """``sbrun -m method=<m> sde.sigma=0.3,3``: the two jobs learn different couplings (the
    same seed's held-out source points land elsewhere), and their oracle is their sigma."""
    import json

    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "sbrun", "-m", f"method={method}", *SMOKE, *BRIDGES[method],
           "sde.sigma=0.3,3", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    x1 = [np.load(sweep / str(k) / "samples.npz")["x1"] for k in (0, 1)]
    assert x1[0].shape == x1[1].shape
    assert np.abs(x1[0] - x1[1]).mean() > 0.05, f"{method}: sde.sigma changed nothing"
    sigmas = [json.loads((sweep / str(k) / "metrics.json").read_text())["oracle_sigma"]
              for k in (0, 1)]
    assert sigmas == [0.3, 3.0]


def test_transport_repeats_draw_the_conditional_law(cli):
    """``sbrun-transport --repeats K``: K different draws per point for a bridge method; a
    deterministic method refuses K > 1 (K copies of one point would pass for a law)."""
    from sbrun.errors import ConfigError
    from sbrun.transport import transport_points

    proc, rd = cli(*SMOKE, "method.coupling=entropic_ot", "solver=euler_maruyama")
    assert proc.returncode == 0, proc.stderr[-2000:]
    x = np.zeros((3, 2), dtype=np.float32)
    out = transport_points(rd, x, repeats=5)
    assert out["x1"].shape == (3, 5, 2)
    assert np.ptp(out["x1"][0], axis=0).min() > 0.01  # five different draws of x1 | x0
    proc, rd = cli(*SMOKE, "method.coupling=exact_ot")
    assert proc.returncode == 0, proc.stderr[-2000:]
    with pytest.raises(ConfigError, match="deterministically"):
        transport_points(rd, x, repeats=2)
    assert transport_points(rd, x)["x1"].shape == (3, 2)
