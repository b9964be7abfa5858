"""Multimarginal interpolants against closed forms: independent Gaussian marginals.

For ``x_k ~ N(m_k, S_k)`` independent, ``x(alpha) = sum_k alpha_k x_k`` is Gaussian with
mean ``mu = sum_k alpha_k m_k`` and covariance ``C = sum_k alpha_k^2 S_k``, and
``g_k(alpha, x) = E[x_k | x(alpha) = x] = m_k + alpha_k S_k C^{-1} (x - mu)``
(``Cov(x_k, x(alpha)) = alpha_k S_k``). That oracle is plugged in as the network.
"""

import json

import pytest
import torch
from torch import nn

from sbrun.data.distributions import Problem
from sbrun.data.gaussians import Gaussian
from sbrun.errors import ConfigError
from sbrun.methods.base import Batch, Phase
from sbrun.methods.multimarginal import Multimarginal, project
from sbrun.methods.simplex import (
    LinePath,
    WeightPath,
    barycentric,
    dirichlet,
    edge_path,
    optimize_path,
    path_cost,
    sample_alpha,
    vertex,
)
from sbrun.sde import Brownian
from sbrun.solvers import get_solver, time_grid

F64 = torch.float64
MEANS = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]], dtype=F64)
COVS = torch.tensor([[[1.0, 0.3], [0.3, 0.5]],
                     [[0.4, -0.1], [-0.1, 0.8]],
                     [[0.2, 0.0], [0.0, 1.5]]], dtype=F64)


class Oracle(nn.Module):
    """``(x: (B, d), alpha: (B, K)) -> g: (B, K, d)``, the closed form above."""

    def __init__(self, means=MEANS, covs=COVS):
        super().__init__()
        self.means, self.covs = means, covs
        self.dummy = nn.Parameter(torch.zeros(1, dtype=F64))  # gives the nets a device

    def forward(self, x, alpha):
        alpha = alpha.to(F64)
        mu = alpha @ self.means
        cov = torch.einsum("bk,kij->bij", alpha**2, self.covs)
        sol = torch.linalg.solve(cov, (x - mu)[..., None])[..., 0]
        return self.means + alpha[..., None] * torch.einsum("kij,bj->bki", self.covs, sol)


def gaussians(means=MEANS, covs=COVS):
    return [Gaussian(m, c, name=f"g{k}", dtype=F64)
            for k, (m, c) in enumerate(zip(means, covs))]


def method_on(i=0, j=2, dists=None, **kw) -> Multimarginal:
    dists = dists or gaussians()
    mm = Multimarginal(**kw)
    mm.bind(Problem("gauss3", dists[j], dists[i], extra={"marginals": dists}), Brownian(1.0))
    return mm


def whitened(dist: Gaussian, n: int, seed: int) -> torch.Tensor:
    """Draws whose empirical mean and covariance (ddof 0) are exactly ``dist``'s."""
    z = torch.randn(n, dist.shape[0], generator=torch.Generator().manual_seed(seed), dtype=F64)
    z = z - z.mean(0)
    chol = torch.linalg.cholesky(z.T @ z / n)
    z = torch.linalg.solve_triangular(chol, z.T, upper=False).T
    return dist.mean + z @ dist.chol.T


def moments(x):
    m = x.mean(0)
    return m, (x - m).T @ (x - m) / x.shape[0]


def gaussian_at(alpha):
    """Law of ``x(alpha)``: ``(mean, cov)``."""
    return alpha @ MEANS, torch.einsum("k,kij->ij", alpha**2, COVS)


NETS = nn.ModuleDict({"net": Oracle()})


# -- the simplex ------------------------------------------------------------------------------
@pytest.mark.parametrize("conc", [0.5, 2.0])
def test_dirichlet_moments(conc):
    k, n = 3, 20_000
    a = dirichlet(n, k, conc, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a.sum(1), torch.ones(n, dtype=F64))
    assert (a >= 0).all()
    var = (1 / k) * (1 - 1 / k) / (k * conc + 1)  # Var of a Dir(conc 1_k) coordinate
    torch.testing.assert_close(a.mean(0), torch.full((k,), 1 / k, dtype=F64), atol=0.01, rtol=0)
    torch.testing.assert_close(a.var(0), torch.full((k,), var, dtype=F64), atol=0, rtol=0.07)
    again = dirichlet(n, k, conc, torch.Generator().manual_seed(0))
    assert torch.equal(a, again)


def test_edge_draws_lie_on_edges():
    a = sample_alpha(5000, 4, 1.0, edge_prob=1.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a.sum(1), torch.ones(5000, dtype=F64))
    assert ((a > 0).sum(1) <= 2).all() and (a.max(1).values < 1).any()


def test_paths_hit_the_vertices_exactly():
    path = WeightPath(4, 1, 3, modes=3)
    with torch.no_grad():
        path.coef.normal_(0, 2, generator=torch.Generator().manual_seed(0))
        path.warp.normal_(0, 2, generator=torch.Generator().manual_seed(1))
    path.double()
    alpha, d_alpha = path(torch.tensor([0.0, 0.37, 1.0], dtype=F64))
    assert torch.equal(alpha[0], vertex(4, 1)) and torch.equal(alpha[2], vertex(4, 3))
    assert (alpha[1] > 0).all()
    torch.testing.assert_close(alpha.sum(1), torch.ones(3, dtype=F64))
    torch.testing.assert_close(d_alpha.sum(1), torch.zeros(3, dtype=F64))
    # d_alpha is the time derivative of alpha (central differences)
    t, h = torch.tensor([0.3], dtype=F64), 1e-6
    fd = (path(t + h)[0] - path(t - h)[0]) / (2 * h)
    torch.testing.assert_close(path(t)[1], fd, atol=1e-6, rtol=1e-6)


# -- alpha at a vertex: the marginal itself ---------------------------------------------------
def test_vertex_gives_back_the_marginal_exactly():
    dists = gaussians()
    xs = torch.stack([d.sample(1000, torch.Generator().manual_seed(k))
                      for k, d in enumerate(dists)], 1)
    for i in range(3):
        e = vertex(3, i).expand(1000, 3)
        assert torch.equal(barycentric(e, xs), xs[:, i])  # x(e_i) = x_i: rho(e_i) = rho_i
        g = Oracle()(xs[:, i], e)
        torch.testing.assert_close(g[:, i], xs[:, i])  # g_i(e_i, x) = x
        torch.testing.assert_close(g[:, (i + 1) % 3], MEANS[(i + 1) % 3].expand(1000, 2))


def test_projection_makes_any_network_exact_at_vertices():
    h = torch.randn(64, 3, 2, dtype=F64)
    x = torch.randn(64, 2, dtype=F64)
    e = vertex(3, 1).expand(64, 3)
    torch.testing.assert_close(project(h, e, x)[:, 1], x)
    alpha = dirichlet(64, 3, 1.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(barycentric(alpha, project(h, alpha, x)), x)
    g = Oracle()(x, alpha)  # the oracle already satisfies the identity
    torch.testing.assert_close(project(g, alpha, x), g)


# -- transport along paths on the simplex ------------------------------------------------------
@pytest.mark.parametrize("i, j", [(0, 2), (1, 0)])
def test_ode_along_an_edge_transports_marginal_i_to_j(i, j):
    mm = method_on(i, j)
    x = whitened(mm.marginals[i], 300, seed=i)
    res = mm.transport(NETS, x, get_solver("rk4"), time_grid(40).double())
    mean, cov = moments(res.x)  # the flow is affine: empirical moments map exactly
    torch.testing.assert_close(mean, MEANS[j], atol=1e-6, rtol=0)
    torch.testing.assert_close(cov, COVS[j], atol=1e-6, rtol=0)


def test_any_path_transports_to_the_law_at_its_end():
    """Curved learnable path e_0 -> e_2, and the straight line to the barycenter."""
    mm = method_on(0, 2)
    x = whitened(mm.marginals[0], 300, seed=3)
    curved = WeightPath(3, 0, 2, modes=2).double()
    with torch.no_grad():
        curved.coef.copy_(torch.tensor([[0.5, 1.0, -0.5], [1.0, -1.0, 0.3], [0.0, 0.5, 0.5]]))
        curved.warp.copy_(torch.tensor([1.0, -0.5]))
    centre = torch.full((3,), 1 / 3, dtype=F64)
    for path, alpha1 in ((curved, vertex(3, 2)), (LinePath(vertex(3, 0), centre), centre)):
        res = mm.transport_along(NETS, x, path, grid=time_grid(60).double())
        mean, cov = moments(res.x)
        m1, c1 = gaussian_at(alpha1)
        torch.testing.assert_close(mean, m1, atol=1e-5, rtol=0)
        torch.testing.assert_close(cov, c1, atol=1e-5, rtol=0)


def test_edge_reduces_to_the_two_marginal_interpolant():
    """On the edge e_i -> e_j, x(alpha(t)) = (1-t) x_i + t x_j and the velocity is flow
    matching's E[x_j - x_i | x_t] = (m_j - m_i) + (t S_j - (1-t) S_i) Sigma_t^{-1} (x - mu_t)."""
    i, j = 0, 2
    mm = method_on(i, j)
    xs = torch.randn(500, 3, 2, dtype=F64)
    x = torch.randn(500, 2, dtype=F64)
    b = mm.drift(NETS)
    path = edge_path(3, i, j)
    for t in (0.1, 0.5, 0.85):
        tt = torch.full((500,), t, dtype=F64)
        alpha, _ = path(tt)
        torch.testing.assert_close(barycentric(alpha, xs), (1 - t) * xs[:, i] + t * xs[:, j])
        sigma = (1 - t) ** 2 * COVS[i] + t**2 * COVS[j]
        mu = (1 - t) * MEANS[i] + t * MEANS[j]
        fm = MEANS[j] - MEANS[i] + (x - mu) @ torch.linalg.solve(
            sigma, t * COVS[j] - (1 - t) * COVS[i])
        torch.testing.assert_close(b(tt, x), fm)


# -- the regression --------------------------------------------------------------------------
def test_loss_is_minimised_by_the_closed_form():
    n, c = 100_000, 0.1
    mm = method_on(0, 2, constrain=False, edge_prob=0.3)
    x1 = torch.zeros(n, 2, dtype=F64)

    def loss_of(net, method=mm):
        batch = Batch(x1, x1, torch.Generator().manual_seed(5))  # same draws every call
        return method.loss(nn.ModuleDict({"net": net}), batch, Phase("train", 1)).loss.item()

    class Shifted(Oracle):
        def forward(self, x, alpha):
            return super().forward(x, alpha) + c

    best, worse = loss_of(Oracle()), loss_of(Shifted())
    # g is the L2 projection: a shift c of all K * d outputs adds K d c^2
    assert worse - best == pytest.approx(3 * 2 * c**2, rel=0.1)
    projected = loss_of(Shifted(), method_on(0, 2, constrain=True, edge_prob=0.3))
    assert best < projected < worse


def test_path_optimisation_lowers_the_transport_cost():
    """1D, zero means, variances (1, 1, 10): ``b = C'(t) / (2 C) x``, so the cost is
    ``int (d/dt sqrt(C))^2 dt``. The straight edge between the two unit variances dips to
    ``C = 1/2`` (cost ``2 - pi/2``); leaning on the wide third marginal keeps C nearer 1."""
    var = torch.tensor([1.0, 1.0, 10.0], dtype=F64)

    def g(alpha, x):  # the oracle in 1D: m_k + alpha_k S_k (x - mu) / C with m = 0
        return alpha[..., None] * var[:, None] * x[:, None] / (alpha**2 @ var)[:, None, None]

    def draw(n, gen):
        return torch.randn(n, 3, 1, generator=gen, dtype=F64) * var.sqrt()[:, None]

    xs = draw(2000, torch.Generator().manual_seed(0))
    straight = path_cost(g, edge_path(3, 0, 1), xs)
    assert straight == pytest.approx(2 - torch.pi / 2, rel=0.05)
    path = WeightPath(3, 0, 1, modes=2).double()
    history = optimize_path(g, path, draw, steps=80, lr=0.1, batch=128, n_times=8,
                            generator=torch.Generator().manual_seed(1))
    assert len(history) == 80
    assert path_cost(g, path, xs) < 0.9 * straight


# -- configuration and the pipeline ------------------------------------------------------------
def test_marginals_pair_and_network_shape():
    mm = method_on(1, 2, include_gaussian=True)
    assert (mm.i, mm.j, mm.k, mm.cond_dim, mm.gaussian_index) == (1, 2, 4, 4, 3)
    assert mm.model_kwargs("net") == {"out_mult": 4}
    gen = Multimarginal()
    from sbrun.data.distributions import StandardGaussian

    gen.bind(Problem("moons", StandardGaussian((2,))), Brownian(1.0))
    assert (gen.k, gen.i, gen.j) == (2, 1, 0)  # generative: from the Gaussian
    with pytest.raises(ConfigError, match="method.path"):
        Multimarginal(path="zigzag")


def test_cli_smoke_multi2d_with_optimised_path(cli):
    proc, rd = cli("debug=smoke", "logger=none", "method=multimarginal", "data=multi2d",
                   "method.path=optimized", "method.path_steps=20", "eval.n_samples=100",
                   "solver=rk4", "solver.steps=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((rd / "metrics.json").read_text())
    pairs = [f"{i}to{j}" for i in range(4) for j in range(4) if i != j]
    for key in ("w2", "w2_ratio_pairs_max", "path_cost_straight", "path_cost_optimized",
                *(f"w2_{p}" for p in pairs), *(f"w2_floor_{p}" for p in pairs)):
        assert key in m, key
    for fig in ("grid", "style_transfer", "path_cost"):
        assert (rd / "figures" / f"{fig}.png").exists(), fig


def test_mnist_classes_builds_with_a_gaussian_marginal(tmp_path):
    from conftest import compose
    from image_files import write_fake_image_root

    from sbrun.pipeline.build import build

    root = write_fake_image_root(tmp_path)
    c = build(compose(["debug=smoke", "method=multimarginal", "data=mnist_classes",
                       f"data.root={root}", "data.classes=[0,1,2]", "model=unet"]))
    mm = c.method
    assert (mm.k, mm.i, mm.j, mm.names[-1]) == (4, 3, 0, "gaussian")
    x = torch.randn(2, 1, 28, 28)
    alpha = dirichlet(2, 4, 1.0).float()
    assert mm.g(c.nets, alpha, x).shape == (2, 4, 1, 28, 28)
    batch = Batch(x, x, torch.Generator().manual_seed(0))
    assert torch.isfinite(mm.loss(c.nets, batch, Phase("train", 1)).loss)
