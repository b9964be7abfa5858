"""Every method trains, samples and is evaluated on images through the same pipeline.

Tiny fake MNIST files (written by the test), a tiny UNet, a handful of steps: the point is
that the shapes flow through every method's losses, samplers, metrics and figures, and that
the reported numbers are the ones of the saved samples.
"""

import json
import math

import numpy as np
import ot
import pytest
from image_files import write_fake_image_root, write_mnist_like

TINY = ["debug=smoke", "model.hidden=8", "trainer.steps=3", "trainer.eval_every=0",
        "trainer.batch_size=8", "solver.steps=2", "eval.n_samples=8", "eval.w2_points=8",
        "eval.fid=none", "eval.final_fid=none"]
METHODS = {
    "flow-matching": ["method.energy_steps=2"],
    "flow-matching-ot": ["method=flow-matching", "method.coupling=exact_ot", "method.energy_steps=2"],
    "stochastic-interpolant": ["solver=euler_maruyama"],
    "ddpm": ["method.chain_steps=100", "method.likelihood=false"],
    "score-sde": ["solver=euler_maruyama", "method.likelihood=false"],
    "dsb": ["data=fashion2mnist", "method.ipf_iters=1", "method.num_steps=3",
            "method.cache_size=8", "method.cache_refresh=2"],
    "eot": ["data=fashion2mnist", "method.n_plan=16"],
    "multimarginal": ["data=mnist_classes", "data.classes=[0,1]", "trainer=default",
                      "method.pair_points=0", "method.cost_points=0", "method.figure_points=2"],
}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = write_fake_image_root(tmp_path_factory.mktemp("images"))
    write_mnist_like(root, "MNIST", n=200)  # ~20 test images per digit class (multimarginal)
    return root


@pytest.mark.parametrize("name", list(METHODS))
def test_method_runs_on_images(name, root, cli):
    extra = METHODS[name]
    method = [] if any(a.startswith("method=") for a in extra) else [f"method={name}"]
    proc, run_dir = cli("+experiment=mnist_cpu", *method, f"data.root={root}", *TINY, *extra)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    samples = np.load(run_dir / "samples.npz")
    x1, target = samples["x1"], samples["target"]
    assert x1.shape == target.shape == (8, 1, 28, 28) and np.isfinite(x1).all()
    assert target.min() >= -1 and target.max() <= 1  # the held-out MNIST-like images
    # the reported W2 is the exact W2 of the saved samples (8 points: no subsampling)
    cost = ((x1.reshape(8, 1, -1) - target.reshape(1, 8, -1)) ** 2).sum(-1).astype(np.float64)
    exact = math.sqrt(ot.emd2(np.full(8, 1 / 8), np.full(8, 1 / 8), cost))
    assert metrics["w2"] == pytest.approx(exact, rel=1e-4)
    assert 0 < metrics["w2_floor"] < 2 * math.sqrt(784)  # two sets of [-1, 1] images
    assert any((run_dir / "figures").glob("*.png"))
