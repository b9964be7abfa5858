"""2D toys: shapes, reproducibility, pinned scale, densities, registry errors."""

import math

import pytest
import torch

from sbrun.data import TOY2D, make_toy
from sbrun.errors import ConfigError

NAMES = sorted(TOY2D)
DENSITY = ["gaussian", "8gaussians", "torchcfm_8gaussians", "checkerboard"]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_and_determinism(name):
    toy = make_toy(name)
    x = toy.sample(257, _gen(1))
    assert x.shape == (257, 2) and x.dtype == torch.float32
    assert toy.shape == (2,) and toy.name == name
    torch.testing.assert_close(x, toy.sample(257, _gen(1)), rtol=0, atol=0)
    assert not torch.equal(x, toy.sample(257, _gen(2)))


@pytest.mark.parametrize("name", NAMES)
def test_no_global_rng(name):
    state = torch.get_rng_state()
    make_toy(name).sample(100, _gen(0))
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("name", NAMES)
def test_documented_std(name):
    toy = make_toy(name)
    std = toy.sample(40_000, _gen(3)).double().std(0)
    torch.testing.assert_close(std, torch.tensor(toy.STD, dtype=torch.float64), rtol=0.1, atol=0)
    if not name.startswith("torchcfm"):
        assert bool(((std > 0.5) & (std < 1.5)).all()), (name, std)


@pytest.mark.parametrize("name", NAMES)
def test_scale_multiplies_samples(name):
    a = make_toy(name).sample(100, _gen(4))
    b = make_toy(name, scale=2.5).sample(100, _gen(4))
    torch.testing.assert_close(b, 2.5 * a)


def test_torchcfm_moons_means():
    # E[x] = 3 (1/2 + 0.1) - 1 and E[y] = 3 (1/4 + 0.1) - 1 (uniform noise 0.2 U[0, 1))
    x = make_toy("torchcfm_moons").sample(40_000, _gen(5)).double()
    torch.testing.assert_close(x.mean(0), torch.tensor([0.8, 0.05], dtype=torch.float64),
                               atol=0.02, rtol=0)


def test_torchcfm_8gaussians_parameters():
    toy = make_toy("torchcfm_8gaussians")
    assert toy.RADIUS == 5.0
    assert math.isclose(toy.COMP_STD, 0.1**0.25)
    assert math.isclose(toy.STD[0], math.sqrt(12.5 + 0.1**0.5), rel_tol=2e-3)


def _grid_integral(toy, half: float, n: int = 600) -> float:
    c = (torch.arange(n, dtype=torch.float64) + 0.5) * (2 * half / n) - half
    xx, yy = torch.meshgrid(c, c, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    return float(toy.log_prob(pts).exp().sum() * (2 * half / n) ** 2)


@pytest.mark.parametrize("name", DENSITY)
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_log_prob_integrates_to_one(name, scale):
    toy = make_toy(name, scale)
    assert toy.has_density
    half = 9.0 * scale if name.startswith("torchcfm") else 4.0 * scale
    assert math.isclose(_grid_integral(toy, half), 1.0, abs_tol=2e-3)


@pytest.mark.parametrize("name", DENSITY)
def test_samples_are_in_support(name):
    toy = make_toy(name, 1.7)
    lp = toy.log_prob(toy.sample(2000, _gen(6)).double())
    assert lp.shape == (2000,) and bool(torch.isfinite(lp).all())


def test_checkerboard_density_values():
    toy = make_toy("checkerboard")
    pts = torch.tensor([[-1.5, -1.5], [-0.5, -1.5], [0.5, 0.5], [2.5, 0.5]], dtype=torch.float64)
    lp = toy.log_prob(pts)
    assert lp[0] == lp[2] == -math.log(8.0)
    assert lp[1] == lp[3] == -math.inf


def test_gaussian_log_prob_closed_form():
    x = torch.tensor([[0.0, 0.0], [1.0, 2.0]], dtype=torch.float64)
    want = torch.tensor([-math.log(2 * math.pi), -2.5 - math.log(2 * math.pi)],
                        dtype=torch.float64)
    torch.testing.assert_close(make_toy("gaussian").log_prob(x), want)


def test_sample_only_toys_have_no_density():
    for name in set(NAMES) - set(DENSITY):
        assert not make_toy(name).has_density, name


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError) as e:
        make_toy("banana")
    msg = str(e.value)
    assert "banana" in msg and all(n in msg for n in NAMES)


def test_bad_scale():
    with pytest.raises(ConfigError):
        make_toy("moons", scale=0.0)


def test_multi2d_generative_is_labelled_by_marginal_index():
    """``multi2d data.generative=true``: the equal mixture of the toys, class k = toy k; each
    class's draws match that toy's held-out draws (W2) far better than any other toy's."""
    from sbrun.data.conditional import labels_of
    from sbrun.data.multi_problems import multi2d
    from sbrun.metrics.distances import w2

    problem = multi2d(generative=True)
    assert problem.generative and problem.shape == (2,)
    labels = labels_of(problem.target)
    assert labels.num_classes == 4
    x, y = labels.sample(4000, _gen(0))
    assert x.shape == (4000, 2) and set(y.tolist()) == {0, 1, 2, 3}
    for k, toy in enumerate(problem.extra["marginals"]):
        assert abs(float((y == k).float().mean()) - 0.25) < 0.03
        torch.testing.assert_close(labels.heldout_class(k, 300, seed=1), toy.heldout(300, seed=1))
        d = [w2(x[y == k][:800], labels.heldout_class(j, 800)) for j in range(4)]
        assert d[k] < 0.25 and d[k] < 0.6 * min(d[j] for j in range(4) if j != k), (k, d)
    torch.testing.assert_close(problem.target.sample(50, _gen(3)), labels.sample(50, _gen(3))[0])
    with pytest.raises(ConfigError, match="choose nothing"):
        multi2d(generative=True, target_index=2)
    assert labels_of(multi2d().target) is None  # the two-marginal problem has no classes


def test_multi2d_generative_run_is_class_conditional():
    from sbrun.pipeline.build import build
    from tests.conftest import compose

    c = build(compose(["debug=smoke", "logger=none", "data=multi2d", "data.generative=true",
                       "method.cond_drop=0.1", "sampler.label=2"]))
    cond = c.method.conditioning
    assert cond.num_classes == 4 and cond.label == 2
    x0, x1, y = c.data.batch(64, torch.Generator().manual_seed(0))
    assert x1.shape == (64, 2) and y.shape == (64,) and int(y.max()) <= 3
    with pytest.raises(ConfigError, match="unknown class 4"):
        build(compose(["debug=smoke", "logger=none", "data=multi2d", "data.generative=true",
                       "method.cond_drop=0.1", "sampler.label=4"]))
