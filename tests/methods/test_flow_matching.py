"""Flow matching against closed forms: the Gaussian-to-Gaussian marginal velocity."""

import pytest
import torch
from torch import nn

from sbrun.data.distributions import Problem, StandardGaussian
from sbrun.errors import ConfigError
from sbrun.methods.base import Batch, Phase
from sbrun.methods.flow_matching import FlowMatching
from sbrun.sde import Brownian
from sbrun.solvers import get_solver, time_grid

M, S = 2.0, 0.5  # target N(M, S^2 I), source N(0, I), independent coupling


class OracleVelocity(nn.Module):
    """E[x1 - x0 | x_t = x] for x_t = (1-t) x0 + t x1, x0 ~ N(0,1), x1 ~ N(M, S^2)."""

    def forward(self, x, t):
        t = t.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        var = (1 - t) ** 2 + t**2 * S**2
        cov = t * S**2 - (1 - t)
        return M + cov / var * (x - t * M)


def test_oracle_velocity_transports_source_to_target():
    fm = FlowMatching()
    nets = nn.ModuleDict({"net": OracleVelocity()})
    x0 = torch.randn(100_000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = fm.transport(nets, x0, get_solver("euler"), time_grid(400).double())
    torch.testing.assert_close(res.x.mean(0), torch.full((2,), M, dtype=torch.float64),
                               atol=0.02, rtol=0)
    torch.testing.assert_close(res.x.std(0), torch.full((2,), S, dtype=torch.float64),
                               atol=0.01, rtol=0)


def test_loss_is_minimised_by_the_oracle():
    fm = FlowMatching()
    fm.bind(Problem("g", StandardGaussian((2,))), Brownian(1.0))
    g = torch.Generator().manual_seed(1)
    n = 200_000
    x0 = torch.randn(n, 2, generator=g, dtype=torch.float64)
    x1 = M + S * torch.randn(n, 2, generator=g, dtype=torch.float64)

    def loss_of(net):
        gen = torch.Generator().manual_seed(2)
        return fm.loss(nn.ModuleDict({"net": net}), Batch(x0, x1, gen), Phase("train", 1)).loss

    class Shifted(OracleVelocity):
        def forward(self, x, t):
            return super().forward(x, t) + 0.1

    best, worse = loss_of(OracleVelocity()), loss_of(Shifted())
    # the oracle is the L2 projection: perturbing by c adds exactly |c|^2 per dim
    assert worse.item() == pytest.approx(best.item() + 2 * 0.1**2, rel=0.02)


def spy_loss(fm: FlowMatching, seed: int, n: int = 100_000):
    """The loss of a zero network on ``x0 = 0 -> x1 = 1`` (1D, ``n`` rows), with the ``x``
    and ``t`` the network was called with: ``({"x": ..., "t": ...}, loss)``."""
    seen = {}

    class Spy(nn.Module):
        def forward(self, x, t):
            seen["x"], seen["t"] = x, t
            return x.new_zeros(x.shape[0], 2, *x.shape[1:]) if fm.bridge else torch.zeros_like(x)

    x0, x1 = torch.zeros(n, 1, dtype=torch.float64), torch.ones(n, 1, dtype=torch.float64)
    out = fm.loss(nn.ModuleDict({"net": Spy()}), Batch(x0, x1, torch.Generator().manual_seed(seed)),
                  Phase("train", 1))
    return seen, out.loss


@pytest.mark.parametrize("antithetic", [None, False])
def test_bridge_path_has_brownian_bridge_marginals_of_the_reference(antithetic):
    """[SF]2M / SB-CFM path: x_t ~ N((1-t) x0 + t x1, sigma^2 t(1-t)), sigma = sde.sigma;
    with antithetic draws (the default) each pair is seen at mu_t +- lambda_t z (2n rows),
    without them once (n rows, torchcfm's SB-CFM)."""
    sigma, n = 0.7, 100_000
    fm = FlowMatching(path_noise="bridge", antithetic=antithetic)
    fm.bind(Problem("g", StandardGaussian((1,))), Brownian(sigma))
    seen, _ = spy_loss(fm, seed=3, n=n)
    t, x = seen["t"].double(), seen["x"][:, 0]
    resid = (x - t) / (sigma * (t * (1 - t)).sqrt())
    assert abs(resid.mean().item()) < 0.02 and abs(resid.std().item() - 1) < 0.02
    if antithetic is None:
        assert x.shape[0] == 2 * n
        torch.testing.assert_close(resid[:n], -resid[n:])  # the mirrored draws
        torch.testing.assert_close(t[:n], t[n:])
    else:
        assert x.shape[0] == n


def test_antithetic_is_refused_on_constant_paths():
    """A knob that changes nothing is an error: constant paths have no bridge draws."""
    with pytest.raises(ConfigError, match="antithetic"):
        FlowMatching(antithetic=True)
    with pytest.raises(ConfigError, match="antithetic"):
        FlowMatching(coupling="exact_ot", antithetic=False)
    assert FlowMatching(coupling="entropic_ot").antithetic
    assert not FlowMatching(coupling="entropic_ot", antithetic=False).antithetic


def test_bad_options():
    with pytest.raises(ConfigError, match="coupling"):
        FlowMatching(coupling="nope")
    with pytest.raises(ConfigError, match="blur"):
        FlowMatching(blur=-1)
    with pytest.raises(ConfigError, match="stochastic-interpolant"):
        FlowMatching(path="encoder_decoder")
    with pytest.raises(ConfigError, match="path_noise"):
        FlowMatching(path_noise="linear")
    with pytest.raises(ConfigError, match="reflow"):
        FlowMatching(reflow=-1)
    with pytest.raises(ConfigError, match="sde.sigma"):  # bridge width is the reference's
        FlowMatching(path_noise="bridge", blur=0.1)
    with pytest.raises(ConfigError, match="bridge paths"):
        FlowMatching(sampler="sde")
    from sbrun.sde import VP

    with pytest.raises(ConfigError, match="Brownian reference"):
        FlowMatching(coupling="entropic_ot").bind(Problem("g", StandardGaussian((2,))), VP())


@pytest.mark.parametrize("key", ["sigma", "coupling_sigma", "sigma_schedule"])
def test_removed_sigma_options_point_to_sde_sigma(key):
    """The old knobs are one-line errors naming their replacement (sde.sigma / path_noise)."""
    from sbrun.config import removed_option

    with pytest.raises(ConfigError, match="sde.sigma") as e:
        FlowMatching(**{key: 0.1})
    assert "\n" not in str(e.value)
    assert "sde.sigma" in removed_option([f"method.{key}=0.1"])
    assert removed_option(["sde.sigma=0.1", "method.blur=0.1"]) is None


# -- paths, couplings, reflow and path energy (issue 6) -----------------------------------

class PathOracle(nn.Module):
    """E[d/dt x_t | x_t = x] for x0 ~ N(0, 1), x1 ~ N(M, S^2) independent (per coordinate)
    and x_t = alpha x0 + beta x1 + gamma z: Sigma = alpha^2 + beta^2 S^2 + gamma^2,
    K = Cov(d/dt x_t, x_t) = alpha' alpha + beta' beta S^2 + gamma gamma'."""

    def __init__(self, fm: FlowMatching):
        super().__init__()
        self.it = fm.interpolant

    def forward(self, x, t):
        c = self.it.coefficients(t, x)
        var = c.alpha_t**2 + c.beta_t**2 * S**2 + c.gamma_t**2
        cov = c.d_alpha_t * c.alpha_t + c.d_beta_t * c.beta_t * S**2 + c.gamma_d_gamma_t
        return c.d_beta_t * M + cov / var * (x - c.beta_t * M)


class WithScoreHead(nn.Module):
    """Two heads (velocity, score) from a velocity network; the score head is 0."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, t):
        v = self.net(x, t)
        return torch.stack([v, torch.zeros_like(v)], 1)


def oracle_nets(net, fm):
    return nn.ModuleDict({"net": WithScoreHead(net) if fm.bridge else net})


@pytest.mark.parametrize("kw", [{"path": "linear"}, {"path": "trigonometric"},
                                {"path": "linear", "path_noise": "bridge", "sampler": "ode"},
                                {"path": "trigonometric", "path_noise": "bridge", "sampler": "ode"}])
def test_path_oracles_transport_and_minimise_the_loss(kw):
    fm = FlowMatching(**kw)
    fm.bind(Problem("g", StandardGaussian((2,))), Brownian(0.5))
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn(50_000, 2, generator=g, dtype=torch.float64)
    res = fm.transport(oracle_nets(PathOracle(fm), fm), x0, get_solver("rk4"),
                       time_grid(100).double())
    torch.testing.assert_close(res.x.mean(0), torch.full((2,), M, dtype=torch.float64), atol=0.02, rtol=0)
    torch.testing.assert_close(res.x.std(0), torch.full((2,), S, dtype=torch.float64), atol=0.01, rtol=0)
    x1 = M + S * torch.randn(50_000, 2, generator=g, dtype=torch.float64)

    def loss_of(shift):
        class Shifted(PathOracle):
            def forward(self, x, t):
                return super().forward(x, t) + shift

        net = oracle_nets(Shifted(fm), fm)
        out = fm.loss(net, Batch(x0, x1, torch.Generator().manual_seed(5)), Phase("train", 1))
        return float(out.stats["loss_v"]) if fm.bridge else out.loss.item()

    assert loss_of(0.1) - loss_of(0.0) == pytest.approx(2 * 0.1**2, rel=0.1)


def test_constant_blur_blurs_the_straight_path_without_a_reference():
    """I-CFM (Tong et al.): x_t = (1-t) x0 + t x1 + blur z, target x1 - x0."""
    fm = FlowMatching(path_noise="constant", blur=0.3)
    seen, loss = spy_loss(fm, seed=6)
    resid = (seen["x"][:, 0] - seen["t"]) / 0.3
    assert abs(resid.mean().item()) < 0.02 and abs(resid.std().item() - 1) < 0.02
    assert loss.item() == pytest.approx(1.0)  # |0 - (x1 - x0)|^2 = 1 for every row
    assert not fm.uses_reference and not fm.stochastic
    sb = FlowMatching(coupling="entropic_ot")  # auto: bridge paths, the SB's SDE, a reference
    assert sb.bridge and sb.uses_reference and sb.stochastic and sb.samples_sde
    ot = FlowMatching(coupling="exact_ot", blur=0.1)
    assert not ot.bridge and not ot.uses_reference


def test_entropic_coupling_with_small_sigma_is_the_exact_assignment():
    from sbrun.methods.flow_matching import couple

    g = torch.Generator().manual_seed(7)
    x0, x1 = torch.randn(12, 2, generator=g, dtype=torch.float64), torch.randn(12, 2, generator=g,
                                                                                  dtype=torch.float64)
    _, exact = couple(Batch(x0, x1, g), "exact_ot", None, False)
    perm = torch.cdist(exact, x1).argmin(1)  # exact: x0 row i goes with x1 row perm[i]
    assert sorted(perm.tolist()) == list(range(12))
    for sigma in (0.02, 0.005):
        a, b = couple(Batch(x0, x1, g), "entropic_ot", sigma, False)
        i, j = torch.cdist(a, x0).argmin(1), torch.cdist(b, x1).argmin(1)
        assert torch.equal(j, perm[i]), f"sigma={sigma}: entropic pairs differ from the assignment"
    a, b = couple(Batch(x0, x1, g), "entropic_ot", 10.0, False)  # large sigma: nearly independent
    assert not torch.equal(torch.cdist(b, x1).argmin(1), perm[torch.cdist(a, x0).argmin(1)])


def test_reflow_phases_regenerate_pairs_along_the_current_flow():
    """With the oracle field of N(0,1) -> N(M, S^2) the flow map is monotone, x -> M + S x:
    reflow pairs are (x0, M + S x0), and a reflow phase trains on them."""
    from sbrun.pipeline.data import BatchSource

    fm = FlowMatching(reflow=2, reflow_pairs=4000, reflow_steps=200)
    prob = Problem("g", StandardGaussian((2,)))
    fm.bind(prob, Brownian(1.0))
    phases = fm.phases(7)
    assert [p.name for p in phases] == ["train", "reflow_1", "reflow_2"]
    assert all(p.steps == 7 for p in phases)
    nets = nn.ModuleDict({"net": OracleVelocity()})
    ctx = {"data": BatchSource(prob), "generator": torch.Generator().manual_seed(8),
           "device": torch.device("cpu")}
    fm.begin_phase(phases[1], nets, ctx)
    x0, x1 = fm.pairs
    assert x0.shape == (4000, 2)
    torch.testing.assert_close(x1, M + S * x0, atol=0.02, rtol=0)
    seen = {}

    class Spy(nn.Module):
        def forward(self, x, t):
            seen["x"], seen["t"] = x, t
            return x.new_zeros(x.shape[0], 2, *x.shape[1:]) if fm.bridge else torch.zeros_like(x)

    far = Batch(torch.full((64, 2), 100.0), torch.full((64, 2), 100.0), torch.Generator())
    fm.loss(nn.ModuleDict({"net": Spy()}), far, phases[1])
    assert seen["x"].abs().max() < 50  # the batch's own draws were not used
    fm.begin_phase(phases[0], nets, ctx)
    assert fm.pairs is None


def test_path_energy_metrics_against_closed_forms():
    """Straight OT paths (the monotone map) have PE = W2^2: NPE ~ 0; the independent
    coupling's field has PE = int E|b|^2 dt = int (M^2 + K^2 / Sigma) dt per coordinate
    (``x_t ~ N(t M, Sigma)``, ``b = M + K / Sigma (x - t M)``)."""
    fm = FlowMatching()
    g = torch.Generator().manual_seed(9)
    x0 = torch.randn(2000, 2, generator=g, dtype=torch.float64)
    target = M + S * torch.randn(2000, 2, generator=g, dtype=torch.float64)

    class MongeVelocity(nn.Module):  # displacement interpolation of x -> M + S x
        def forward(self, x, t):
            t = t.reshape(-1, 1).to(x.dtype)
            start = (x - t * M) / (1 - t + t * S)
            return M + (S - 1) * start

    ot = fm.metrics(nn.ModuleDict({"net": MongeVelocity()}), x0, None, target)
    assert ot["path_energy"] == pytest.approx(2 * (M**2 + (S - 1) ** 2), rel=0.03)
    assert ot["ot_cost"] == pytest.approx(2 * (M**2 + (S - 1) ** 2), rel=0.05)
    assert ot["normalized_path_energy"] < 0.06
    ind = fm.metrics(nn.ModuleDict({"net": OracleVelocity()}), x0, None, target)
    t = torch.linspace(0, 1, 100_001, dtype=torch.float64)
    var, cov = (1 - t) ** 2 + t**2 * S**2, t * S**2 - (1 - t)
    exact = 2 * torch.trapezoid(M**2 + cov**2 / var, t).item()
    assert ind["path_energy"] == pytest.approx(exact, rel=0.03)
    # in 1D-per-coordinate the flow map is still the monotone (OT) map, its paths are not
    # straight: PE exceeds W2^2 = 2 (M^2 + (S - 1)^2) by about 5 %
    w2sq = 2 * (M**2 + (S - 1) ** 2)
    assert ind["path_energy"] > 1.03 * ot["path_energy"]
    assert ind["normalized_path_energy"] == pytest.approx((exact - w2sq) / w2sq, abs=0.03)


# -- [SF]2M: the bridge SDE with the closed-form velocity and score (issue 13) ------------

class GaussianSBFields(nn.Module):
    """Velocity and score heads of the closed-form SB between two Gaussians."""

    def __init__(self, g0, g1, sigma):
        super().__init__()
        from sbrun.couplings.gaussian import gaussian_sb_fields

        self.v, self.s = gaussian_sb_fields(g0, g1, sigma)

    def forward(self, x, t):
        tt = float(t[0])
        return torch.stack([self.v(tt, x), self.s(tt, x)], 1).to(x.dtype)


@pytest.mark.parametrize("sigma", [0.3, 1.0, 3.0])
def test_sf2m_sde_with_closed_form_fields_samples_the_bridge_conditional(sigma):
    """dX = [v + sigma^2/2 s] dt + sigma dW from x0 reproduces the closed-form SB x1 | x0
    (mean and covariance) between Gaussians with unequal non-diagonal covariances."""
    from sbrun.couplings.gaussian import gaussian_sb_conditional
    from sbrun.data.gaussians import Gaussian

    g0 = Gaussian(torch.tensor([0.5, -1.0]), torch.tensor([[1.0, 0.4], [0.4, 0.6]]))
    g1 = Gaussian(torch.tensor([2.0, 1.0]), torch.tensor([[0.5, -0.3], [-0.3, 1.5]]))
    fm = FlowMatching(coupling="entropic_ot")
    fm.bind(Problem("g", StandardGaussian((2,))), Brownian(sigma))
    assert fm.bridge_sigma() == sigma and fm.stochastic
    nets = nn.ModuleDict({"net": GaussianSBFields(g0, g1, sigma)})
    starts = torch.tensor([[0.5, -1.0], [1.5, -0.5], [-0.5, -1.8]], dtype=torch.float64)
    k = 20_000
    x0 = starts.repeat_interleave(k, 0)
    res = fm.transport(nets, x0, get_solver("euler_maruyama"), time_grid(400).double(),
                       generator=torch.Generator().manual_seed(10))
    x1 = res.x.reshape(3, k, 2)
    mean, cov = gaussian_sb_conditional(g0, g1, sigma, starts)
    scale = g1.cov.trace().sqrt()
    torch.testing.assert_close(x1.mean(1), mean, atol=0.03 * scale, rtol=0)
    for i in range(3):
        torch.testing.assert_close(torch.cov(x1[i].T), cov, atol=0.03 * g1.cov.trace(), rtol=0)
    # the probability-flow ODE (sampler=ode) is a map: same marginal, no conditional spread
    ode = FlowMatching(coupling="entropic_ot", sampler="ode")
    ode.bind(Problem("g", StandardGaussian((2,))), Brownian(sigma))
    det = ode.transport(nets, x0[:10], get_solver("euler"), time_grid(100).double())
    assert not ode.stochastic and torch.allclose(det.x[0], det.x[1])
