"""Multimarginal stochastic interpolants on the simplex (Albergo, Boffi, Lindsey,
Vanden-Eijnden 2023, arXiv:2310.03695; seed 004, slides 36-40).

Marginals ``rho_1..rho_K`` (and ``x_0 ~ N(0, I)`` with ``include_gaussian``), drawn
independently, give the barycentric interpolant ``x(alpha) = sum_k alpha_k x_k`` for
``alpha`` on the simplex. One network, conditioned on ``alpha: (B, K)``, outputs every
``g_k(alpha, x) = E[x_k | x(alpha) = x]`` at once (``(B, K, *D)``), regressed by
``sum_k |g_k(alpha, x(alpha)) - x_k|^2`` with ``alpha`` drawn on the simplex.

Any path ``alpha(t)`` from ``e_i`` to ``e_j`` then transports ``rho_i`` to ``rho_j`` by the
probability-flow ODE ``dx = b dt``, ``b(t, x) = sum_k alpha_k'(t) g_k(alpha(t), x)``. The
run's main pair ``i -> j`` is the problem's source -> target (a generative problem starts
from the Gaussian); ``path=optimized`` replaces the straight edge by the path of least
``int_0^1 E|b|^2 dt`` found with ``g`` frozen (seed 004's geometric algorithm).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sbrun.data.distributions import StandardGaussian
from sbrun.errors import ConfigError
from sbrun.methods.base import Batch, LossOutput, Method, Phase
from sbrun.methods.simplex import (
    WeightPath,
    barycentric,
    edge_path,
    optimize_path,
    path_cost,
    sample_alpha,
)
from sbrun.metrics.pairs import heldout_halves, pair_table

PATHS = ("edge", "optimized")


def project(h: Tensor, alpha: Tensor, x: Tensor) -> Tensor:
    """Orthogonal projection of ``h: (B, K, *D)`` onto ``{g : sum_k alpha_k g_k = x}``.

    ``g_k = h_k + alpha_k (x - sum_j alpha_j h_j) / |alpha|^2``. The true ``g`` satisfies
    the identity (``E[x(alpha) | x(alpha) = x] = x``), so the projection only removes
    error; at a vertex ``e_i`` it gives ``g_i = x``.
    """
    a = alpha.to(h.dtype)
    w = (a / a.pow(2).sum(1, keepdim=True)).reshape(*a.shape, *([1] * (h.dim() - 2)))
    return h + w * (x - barycentric(a, h))[:, None]


class Multimarginal(Method):
    """Learn ``g_1..g_K`` on the simplex; transport between any two marginals.

    Args:
        include_gaussian: add ``x_0 ~ N(0, I)`` as the last marginal (always on for a
            generative problem, whose source is that Gaussian).
        dirichlet: concentration ``c`` of the training draws ``alpha ~ Dir(c)``.
        edge_prob: fraction of training ``alpha`` drawn uniformly on a random edge.
        constrain: project the outputs onto ``sum_k alpha_k g_k = x`` (see :func:`project`).
        path: ``edge`` (straight) | ``optimized`` for the run's main transport.
        path_modes, path_steps, path_lr, path_batch, path_times: the learnable path
            (:class:`~sbrun.methods.simplex.WeightPath`) and its Adam optimisation.
        cost_points, cost_times: draws and midpoint cells of the reported path costs.
        pair_points: held-out points per ordered pair of the all-pairs W2 table (capped
            by the evaluation's sample count); 0 skips the table.
        figure_points: points per panel of the 2D figures.
    """

    name = "multimarginal"
    uses_reference = False  # interpolants over the simplex: no reference process, no sigma

    def __init__(self, include_gaussian: bool = False, dirichlet: float = 1.0,
                 edge_prob: float = 0.5, constrain: bool = True, path: str = "edge",
                 path_modes: int = 3, path_steps: int = 300, path_lr: float = 0.05,
                 path_batch: int = 256, path_times: int = 16, cost_points: int = 1000,
                 cost_times: int = 32, pair_points: int = 1000, figure_points: int = 500):
        if path not in PATHS:
            raise ConfigError(f"unknown method.path '{path}'; valid: {', '.join(PATHS)}")
        if not dirichlet > 0:
            raise ConfigError(f"method.dirichlet must be > 0, got {dirichlet}")
        if not 0 <= edge_prob <= 1:
            raise ConfigError(f"method.edge_prob must be in [0, 1], got {edge_prob}")
        if min(path_modes, path_steps, pair_points, cost_points) < 0 or min(
                path_batch, path_times, cost_times) < 1:
            raise ConfigError("method: path/cost/pair sizes must be >= 0 (batch, times >= 1)")
        self.include_gaussian, self.dirichlet, self.edge_prob = include_gaussian, dirichlet, edge_prob
        self.constrain, self.path = constrain, path
        self.path_opts = dict(steps=path_steps, lr=path_lr, batch=path_batch, n_times=path_times)
        self.path_modes = path_modes
        self.cost_points, self.cost_times = cost_points, cost_times
        self.pair_points, self.figure_points = pair_points, figure_points
        self._solver = self._grid = self._optimized = None

    # -- setup ---------------------------------------------------------------------------
    def bind(self, problem, sde) -> None:
        """Collect the marginals and find the main pair ``(i, j)`` among them."""
        super().bind(problem, sde)
        extra = problem.extra or {}
        marginals = list(extra.get("marginals") or [])
        if not marginals:
            marginals = ([] if problem.generative else [problem.source]) + [problem.target]
        names = list(extra.get("names") or [])
        if len(names) != len(marginals):
            classes = extra.get("classes")
            names = ([f"digit {c}" for c in classes] if classes and len(classes) == len(marginals)
                     else [getattr(m, "name", f"marginal {k}") for k, m in enumerate(marginals)])
        self.n_data = len(marginals)
        self.gaussian_index = None
        if self.include_gaussian or problem.generative:
            self.gaussian_index = len(marginals)
            marginals.append(StandardGaussian(problem.shape))
            names.append("gaussian")
        if len(marginals) < 2:
            raise ConfigError("method=multimarginal needs at least two marginals")
        self.marginals, self.names = marginals, names
        self.cond_dim = len(marginals)  # the network is conditioned on alpha: (B, K)
        self.i = self.gaussian_index if problem.generative else self._index(problem.source)
        self.j = self._index(problem.target)

    def _index(self, dist) -> int:
        for k, m in enumerate(self.marginals):
            if m is dist:
                return k
        raise ConfigError(f"{self.problem.name}: its source/target is not one of "
                          "problem.extra['marginals'] (build the problem with "
                          "sbrun.data.multi_problems)")

    @property
    def k(self) -> int:
        """Number of marginals ``K`` (Gaussian included): the conditioning width."""
        return len(self.marginals)

    def model_kwargs(self, name: str) -> dict:
        return {"out_mult": self.k}

    # -- the regression ------------------------------------------------------------------
    def draw(self, n: int, generator: torch.Generator | None, device=None) -> Tensor:
        """One independent draw of every marginal per row: ``(n, K, *D)``."""
        xs = torch.stack([m.sample(n, generator) for m in self.marginals], 1)
        return xs if device is None else xs.to(device)

    def g(self, nets: nn.ModuleDict, alpha: Tensor, x: Tensor) -> Tensor:
        """``g_k(alpha, x)`` for ``alpha: (B, K)``, ``x: (B, *D)`` -> ``(B, K, *D)``."""
        h = nets["net"](x, alpha.to(x.dtype))
        return project(h, alpha, x) if self.constrain else h

    def loss(self, nets: nn.ModuleDict, batch: Batch, phase: Phase) -> LossOutput:
        n, dev = batch.x1.shape[0], batch.x1.device
        xs = self.draw(n, batch.generator, dev)
        alpha = sample_alpha(n, self.k, self.dirichlet, self.edge_prob, batch.generator)
        alpha = alpha.to(dev, xs.dtype)
        g = self.g(nets, alpha, barycentric(alpha, xs))
        loss = (g - xs).pow(2).reshape(n, -1).sum(1).mean()
        return LossOutput(loss, {"loss": loss.detach()})

    # -- transport -------------------------------------------------------------------------
    def velocity(self, nets: nn.ModuleDict, path: nn.Module):
        """The drift ``b(t, x) = sum_k alpha_k'(t) g_k(alpha(t), x)`` along ``path``."""

        def b(t: Tensor, x: Tensor) -> Tensor:
            alpha, d_alpha = path(t.to(x.dtype))
            return barycentric(d_alpha, self.g(nets, alpha, x))

        return b

    def main_path(self, nets: nn.ModuleDict) -> nn.Module:
        """The path of the run's transport ``i -> j`` (straight, or optimised for ``nets``)."""
        return self.optimized_path(nets) if self.path == "optimized" else \
            edge_path(self.k, self.i, self.j)

    def drift(self, nets: nn.ModuleDict, direction: str = "forward"):
        return self.velocity(nets, self.main_path(nets))

    def transport(self, nets, x, solver, grid, *, direction="forward", generator=None, keep=None):
        self._solver, self._grid = solver, grid  # the run's solver, reused by metrics/figures
        return solver(self.drift(nets), x, grid, generator=generator, keep=keep)

    def transport_along(self, nets, x: Tensor, path: nn.Module, keep: int | None = None,
                        grid: Tensor | None = None):
        """Move ``x: (B, *D)`` along any ``path`` with the run's solver and grid (RK4 x 25
        before the run has transported anything, or on ``grid`` when given)."""
        from sbrun.solvers import get_solver, time_grid

        solver = self._solver or get_solver("rk4")
        if grid is None:
            grid = self._grid if self._grid is not None else time_grid(25)
        with torch.no_grad():
            return solver(self.velocity(nets, path.to(x.device)), x, grid, keep=keep)

    def barycenter(self) -> Tensor:
        """The centre of the data marginals' face, ``(K,)`` (the Gaussian weight is 0)."""
        a = torch.zeros(self.k, dtype=torch.float64)
        a[: self.n_data] = 1.0 / self.n_data
        return a

    # -- the geometric algorithm for alpha(t) --------------------------------------------------
    def _fingerprint(self, nets) -> tuple:
        with torch.no_grad():
            return id(nets), sum(float(p.double().sum()) for p in nets.parameters())

    def optimized_path(self, nets: nn.ModuleDict) -> WeightPath:
        """Minimise ``int E|b|^2 dt`` over :class:`WeightPath` for ``i -> j`` (cached per weights)."""
        key = self._fingerprint(nets)
        if self._optimized is None or self._optimized[0] != key:
            dev = next(nets.parameters()).device
            path = WeightPath(self.k, self.i, self.j, self.path_modes).to(dev)
            g = torch.Generator().manual_seed(12_345)
            history = optimize_path(lambda a, x: self.g(nets, a, x), path,
                                    lambda n, gen: self.draw(n, gen, dev), generator=g,
                                    **self.path_opts)
            self._optimized = (key, path.requires_grad_(False), history)
        return self._optimized[1]

    def _cost_draws(self, n: int, device) -> Tensor:
        return self.draw(n, torch.Generator().manual_seed(54_321), device)

    def path_costs(self, nets: nn.ModuleDict, n: int) -> dict[str, float]:
        """``path_cost_straight`` (and ``path_cost_optimized``) of the main pair."""
        dev = next(nets.parameters()).device
        xs = self._cost_draws(n, dev)
        g = lambda a, x: self.g(nets, a, x)  # noqa: E731
        out = {"path_cost_straight": path_cost(g, edge_path(self.k, self.i, self.j).to(dev), xs,
                                               self.cost_times)}
        if self.path == "optimized":
            out["path_cost_optimized"] = path_cost(g, self.optimized_path(nets), xs,
                                                   self.cost_times)
        return out

    # -- evaluation ----------------------------------------------------------------------------
    def pair_table(self, nets: nn.ModuleDict, n: int, seed: int = 0) -> dict[str, float]:
        """W2 of the straight-edge transport for every ordered pair of data marginals
        (:func:`sbrun.metrics.pairs.pair_table`: ``w2_{i}to{j}``, its floor and ratio)."""
        dev = next(nets.parameters()).device
        sets = [heldout_halves(m, n, seed + 1000 * k)
                for k, m in enumerate(self.marginals[: self.n_data])]

        def move(x: Tensor, i: int, j: int) -> Tensor:
            return self.transport_along(nets, x.to(dev), edge_path(self.k, i, j)).x.cpu()

        return pair_table(move, sets, n, seed)

    def metrics(self, nets, x0, result, target) -> dict[str, float]:
        """All-pairs W2 table, and the transport cost of the straight (and optimised) path."""
        if result.t is not None:
            self._grid = result.t.detach().cpu()
        out = {}
        if self.pair_points:
            out.update(self.pair_table(nets, min(self.pair_points, x0.shape[0])))
        if self.cost_points:
            out.update(self.path_costs(nets, min(self.cost_points, x0.shape[0])))
        return out

    def figures(self, nets, evaluation) -> dict:
        """Grid from one initial condition to every marginal and the barycenter; the same
        source points moved to every other marginal; straight vs optimised path cost
        (:mod:`sbrun.methods.multimarginal_figures`)."""
        from sbrun.methods.multimarginal_figures import figures

        return figures(self, nets)
