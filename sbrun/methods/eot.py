"""Entropic optimal transport and the static -> dynamic Schrödinger bridge (seed 001).

Static problem: the discrete entropic plan between ``n_plan`` source and target draws
with cost ``|x-y|^2/2`` and ``eps = sigma^2`` (POT, log-domain with epsilon scaling;
``solver=emd`` is the exact sigma -> 0 limit). Dynamic bridge:
``P* = ∫ R_{|xy} dP*_01(x, y)``: pairs from the plan joined by Brownian bridges of the
reference ``dX = sigma dW``. Three ways to move a (possibly new) source point ``x``:

* ``map=plan`` (default, training-free): draw ``x1 ~ pi(. | x)``,
  ``pi(y_k | x) ∝ exp((g(y_k) - |x - y_k|^2/2) / eps)`` over ``n_atoms`` target draws
  ``y_k``, ``g`` the plan's target potential extended to them by its c-transform
  (``sbrun.couplings.conditional``), then a Brownian bridge. The conditional is a weighted
  empirical law whose effective size grows with ``n_atoms``: in d = 16 at sigma = 1 a
  conditional covers ~1/130 of the target, so the plan's own 1000 atoms resolve it with
  ~8 effective atoms and its covariance comes out too small;
* ``map=barycentric``: the entropic barycentric map ``E_pi[x1 | x]`` (same atoms) and the
  straight (McCann) path, the sigma -> 0 picture;
* ``map=neural``: a drift fitted by bridge matching on plan pairs (the Markovian
  projection of the mixture of bridges, which is the Schrödinger bridge), sampled with
  ``dX = v dt + sigma dW``.
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import Tensor, nn

from sbrun.errors import ConfigError
from sbrun.methods.base import Batch, LossOutput, Method, Phase
from sbrun.sde.base import expand_t
from sbrun.solvers.base import SolveResult

MAPS = ("plan", "barycentric", "neural")
SOLVERS = ("sinkhorn_log", "sinkhorn", "emd")
# the slide's regulariser s in terms of the runner's eps = sigma^2 (seed 001, Figs. 5 / 9)
SLIDE_UNITS = {"none": None, "kl": ("Fig. 5", 1.0), "entropic": ("Fig. 9", 2.0)}


class EOT(Method):
    """Entropic OT between empirical samples, turned into a Schrödinger bridge.

    Args:
        solver: ``sinkhorn_log`` (default) | ``sinkhorn`` | ``emd`` (exact, sigma -> 0).
        n_plan: source and target points the static plan is solved on.
        n_atoms: target draws the conditional ``x1 | x0`` of ``map=plan|barycentric`` lives
            on (the plan's ``n_plan`` atoms first; a finite training set whose size is at
            most ``n_atoms`` is used whole); ``None``: the plan's atoms only.
        map: ``plan`` | ``barycentric`` | ``neural`` (see the module docstring).
        max_iter, tol: Sinkhorn limits (marginal error); a warning if not converged.
        plan_seed: seed of the draws the plan is solved on.
        slide_units: also title the plans in a slide's units (seed 001): ``kl`` (Fig. 5,
            ``KL(P01|R01) = (1/s)[int |x-y|^2/2 dP - s H(P)]``: ``s = eps = sigma^2``),
            ``entropic`` (Fig. 9, ``int |x-y|^2 dP - s H(P)``: ``s = 2 sigma^2``) or
            ``none``. Titles only; the plan is the same.
        convergence_sigmas: sigmas of a Sinkhorn convergence figure
            (``figures/sinkhorn_convergence.png``: marginal error per IPF iteration, log
            scale, seed 003) and of the metrics ``sinkhorn_rate_<k>`` (the geometric
            factor per iteration); empty: no figure.
        convergence_points: points per side of that figure's plans.
    """

    name = "eot"
    stochastic = True

    def __init__(self, solver: str = "sinkhorn_log", n_plan: int = 1000,
                 n_atoms: int | None = 64000, map: str = "plan",
                 max_iter: int = 5000, tol: float = 1e-6, plan_seed: int = 0,
                 slide_units: str = "none", convergence_sigmas=(), convergence_points: int = 200):
        if solver not in SOLVERS:
            raise ConfigError(f"unknown method.solver '{solver}'; valid: {', '.join(SOLVERS)}")
        if map not in MAPS:
            raise ConfigError(f"unknown method.map '{map}'; valid: {', '.join(MAPS)}")
        if n_plan < 2:
            raise ConfigError(f"method.n_plan must be >= 2, got {n_plan}")
        if n_atoms is not None and n_atoms < n_plan:
            raise ConfigError(f"method.n_atoms must be >= method.n_plan ({n_plan}) or null, "
                              f"got {n_atoms}")
        if slide_units not in SLIDE_UNITS:
            raise ConfigError(f"unknown method.slide_units '{slide_units}'; valid: {', '.join(SLIDE_UNITS)}")
        self.convergence_sigmas = [float(s) for s in convergence_sigmas]
        if any(s <= 0 for s in self.convergence_sigmas):
            raise ConfigError(f"method.convergence_sigmas must be > 0, got {self.convergence_sigmas}")
        if convergence_points < 2:
            raise ConfigError(f"method.convergence_points must be >= 2, got {convergence_points}")
        self.slide_units, self.convergence_points = slide_units, int(convergence_points)
        self.solver, self.n_plan, self.n_atoms, self.map = solver, n_plan, n_atoms, map
        self.networks = ("net",) if map == "neural" else ()  # plan/barycentric: training-free
        self.max_iter, self.tol, self.plan_seed = max_iter, tol, plan_seed
        self.solution = self._atoms = None  # the solved static plan (CouplingResult)
        self.coupling = "exact_ot" if solver == "emd" else "entropic_ot"  # pairs drawn from it
        self._traces = None  # Sinkhorn traces of the convergence figure (eot_figures)

    # -- setup ---------------------------------------------------------------------
    def bind(self, problem, sde) -> None:
        super().bind(problem, sde)
        if sde.sigma is None:
            raise ConfigError(f"method=eot needs a Brownian reference dX = sigma dW "
                              f"(sde=brownian), got sde={sde.name}")
        self.sigma = float(sde.sigma)
        self.stochastic = self.map != "barycentric"
        self.sampler_label = {"plan": "plan + exact Brownian bridges",
                              "barycentric": "barycentric map, straight paths"}.get(self.map)

    def bridge_sigma(self) -> float | None:
        """``sde.sigma``: the plan is the static SB of ``dX = sigma dW`` (``eps = sigma^2``)."""
        return float(self.sde.sigma)

    @property
    def eps(self) -> float:
        """Entropic regularisation ``eps = sigma^2`` (0 for ``solver=emd``)."""
        return 0.0 if self.solver == "emd" else self.sigma**2

    def _draw(self, dist, n: int, g: torch.Generator) -> Tensor:
        train = getattr(dist, "train", None)
        if train is not None and train.shape[0] <= n:
            return train
        return dist.sample(n, g)

    def solve(self, source_dist=None) -> None:
        """Solve the static plan once (lazily) on ``n_plan`` draws of each side."""
        if self.solution is not None:
            return
        from sbrun.couplings import solve_coupling
        from sbrun.data.distributions import StandardGaussian

        g = torch.Generator().manual_seed(self.plan_seed)
        src = source_dist or self.problem.source or StandardGaussian(self.problem.shape)
        self.x0s = self._draw(src, self.n_plan, g).double()
        self.x1s = self._draw(self.problem.target, self.n_plan, g).double()
        method = "exact" if self.solver == "emd" else self.solver
        exact = method == "exact"  # the network simplex uses its own iteration limit
        self.solution = solve_coupling(self.x0s, self.x1s, method=method,
                                       sigma=None if exact else self.sigma,
                                       max_iter=None if exact else self.max_iter, tol=self.tol)

    # -- checkpoint: the solved plan, so a finished run transports without re-solving ------
    def state_dict(self) -> dict:
        """The static plan (tensors and numbers only) for the run's checkpoint."""
        self.solve()
        c = self.solution
        return {"x0s": self.x0s, "x1s": self.x1s, "plan": c.plan, "cost": float(c.cost),
                "potentials": None if c.potentials is None else list(c.potentials),
                "converged": bool(c.converged), "n_iter": int(c.n_iter), "err": float(c.err)}

    def load_state_dict(self, state: dict) -> None:
        from sbrun.couplings.base import CouplingResult

        pot = state["potentials"]
        self.x0s, self.x1s = state["x0s"].cpu(), state["x1s"].cpu()
        self._atoms = None
        self.solution = CouplingResult(state["plan"].cpu(), state["cost"],
                                       None if pot is None else (pot[0].cpu(), pot[1].cpu()),
                                       state["converged"], state["n_iter"], state["err"])

    def phases(self, steps: int) -> list[Phase]:
        return [Phase("train", steps)] if self.map == "neural" else []

    def begin_phase(self, phase, nets, ctx) -> None:
        self.solve(ctx["data"].source)

    # -- out-of-sample conditional: the plan's potential on n_atoms target draws ----------
    def atoms(self) -> tuple[Tensor, Tensor | None]:
        """``(y (M, *D), g(y) (M,))``: the conditional's target atoms and potential (``g``
        ``None`` for ``emd``: the plan rows of the nearest solved source point are used)."""
        self.solve()
        pot = self.solution.potentials
        if self.eps == 0 or pot is None:
            return self.x1s, None
        if self._atoms is None:
            from sbrun.couplings.conditional import extend_potential

            y, target = self.x1s, self.problem.target
            train = getattr(target, "train", None)
            if self.n_atoms is not None and train is not None and train.shape[0] <= self.n_atoms:
                y = train.double()
            elif self.n_atoms is not None and self.n_atoms > y.shape[0]:
                g = torch.Generator().manual_seed(self.plan_seed + 2)
                y = torch.cat([y, target.sample(self.n_atoms - y.shape[0], g).double()])
            self._atoms = (y, extend_potential(pot[0], self.x0s, y, self.eps))
        return self._atoms

    def _nearest_rows(self, x: Tensor) -> Tensor:
        """``pi(. | x)`` of the exact plan: the row of the nearest solved source point."""
        xf, x0s = x.reshape(x.shape[0], -1).double(), self.x0s.reshape(self.x0s.shape[0], -1)
        p = self.solution.plan[torch.cdist(xf, x0s.to(xf.device)).argmin(1).cpu()]
        return p / p.sum(1, keepdim=True)

    # -- neural drift: bridge matching on plan pairs ----------------------------------
    def loss(self, nets: nn.ModuleDict, batch: Batch, phase: Phase) -> LossOutput:
        from sbrun.couplings import sample_pairs

        i, j = sample_pairs(self.solution.plan, batch.x1.shape[0], batch.generator)
        dev = batch.x1.device
        x0, x1 = self.x0s[i].float().to(dev), self.x1s[j].float().to(dev)
        t = batch.rand(x0.shape[0]) * 0.999
        xt = self.sde.bridge(t, x0, x1).sample(generator=batch.generator)
        pred = nets["net"](xt, t)  # endpoint parameterisation: E[x1 | x_t]
        loss = (pred - x1).pow(2).reshape(x1.shape[0], -1).sum(1).mean()
        return LossOutput(loss, {"loss": loss.detach()})

    def drift(self, nets, direction: str = "forward"):
        net = nets["net"]

        def v(t, x):
            return (net(x, t) - x) / (1 - expand_t(t, x)).clamp_min(1e-3)

        return v

    def diffusion(self, direction: str = "forward"):
        if self.map != "neural":
            return None
        return lambda t: torch.full_like(t, self.sigma)

    # -- transport ---------------------------------------------------------------------
    def transport(self, nets, x, solver, grid, *, direction="forward", generator=None, keep=None):
        self.solve()
        if self.map == "neural":
            kw = {}
            if "noise_last_step" in inspect.signature(solver.fn).parameters:
                kw["noise_last_step"] = False  # the bridge is pinned at t = 1
            return solver(self.drift(nets), x, grid, diffusion=self.diffusion(),
                          generator=generator, keep=keep, **kw)
        from sbrun.couplings.conditional import conditional_draw, conditional_mean

        y, g = self.atoms()
        w = self._nearest_rows(x) if g is None else None
        ts = grid.to(x.dtype)
        if self.map == "barycentric":  # E_pi[x1 | x], then the straight (McCann) path
            x1 = (w @ y.reshape(y.shape[0], -1)).reshape(x.shape) if g is None else \
                conditional_mean(x.cpu(), y, g, self.eps)
            x1 = x1.to(x)
            path = torch.stack([(1 - t) * x + t * x1 for t in ts], 1)
        else:  # x1 ~ pi(. | x), then the reference bridge pinned at (x, x1)
            j = torch.multinomial(w, 1, generator=generator)[:, 0] if g is None else \
                conditional_draw(x.cpu(), y, g, self.eps, generator)
            x1 = y[j].reshape(x.shape).to(x)
            path = self.sde.bridge_path(x, x1, ts, generator)
        return SolveResult(x=path[:, -1], nfe=0, t=grid, path=path[:keep] if keep else None)

    # -- figures ------------------------------------------------------------------------
    def figures(self, nets, evaluation) -> dict:
        """The static plan: as a matrix and as couplings (2D), or as a 1D plan."""
        from sbrun.methods.eot_figures import barycenter_figure, barycenter_shapes, convergence_figure
        from sbrun.plots.ot import coupling_lines, plan_1d, plan_matrix

        self.solve()
        plan, x0, x1 = self.solution.plan, self.x0s, self.x1s
        tag = f"eot ({self.solver}){self._sigma_label()}, n={x0.shape[0]}"
        figs = {}
        if x0.shape[1:] == (1,):
            figs["plan"] = plan_1d(x0[:, 0], x1[:, 0], plan, title=tag)
        elif x0.shape[1:] == (2,):
            k = min(200, x0.shape[0])
            sub = plan[:k, :k]
            o0 = torch.atan2(x0[:k, 1], x0[:k, 0]).argsort()
            o1 = torch.atan2(x1[:k, 1], x1[:k, 0]).argsort()
            figs["plan"] = plan_matrix(sub, o0, o1, title=f"{tag}\n(first {k}, by angle)")
            figs["couplings"] = coupling_lines(x0[:k], x1[:k], sub, title=tag)
        if self.convergence_sigmas:
            figs["sinkhorn_convergence"] = convergence_figure(self)[0]
        if shapes := barycenter_shapes(self.problem):
            figs["barycenters"] = barycenter_figure(self, shapes)
        return figs

    def _sigma_label(self) -> str:
        """``, σ=.. (ε=σ²=..)``, with the slide's value first when ``slide_units`` is set;
        nothing for ``emd`` (no regulariser)."""
        if self.solver == "emd":
            return ""
        label = f"σ={self.sigma:.3g} (ε=σ²={self.eps:.3g})"
        units = SLIDE_UNITS[self.slide_units]
        if units is not None:
            fig, factor = units
            label = f"slide {fig}: σ={factor * self.eps:.3g}\n≙ runner {label}"
        return ", " + label

    def metrics(self, nets, x0, result, target) -> dict[str, float]:
        """The static plan: ``plan_spread`` = ``(H(P) - log n) / log n`` (0: a permutation,
        the sigma -> 0 plan; 1: the independent coupling), ``ot_cost`` = ``<P, |x-y|^2/2>``;
        ``sinkhorn_rate_<k>`` for ``convergence_sigmas``, ``barycenter_midpoint_gap`` with three
        2D marginals (:func:`~sbrun.methods.eot_figures.barycenter_metrics`)."""
        self.solve()
        p = self.solution.plan.double()
        n = p.shape[0]
        entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
        out = {"plan_spread": (entropy - math.log(n)) / math.log(n), "ot_cost": float(self.solution.cost)}
        if self.convergence_sigmas:
            from sbrun.methods.eot_figures import convergence_figure

            out.update(convergence_figure(self, draw=False)[1])
        from sbrun.methods.eot_figures import barycenter_metrics, barycenter_shapes

        if shapes := barycenter_shapes(self.problem):
            out.update(barycenter_metrics(self, shapes))
        return out
