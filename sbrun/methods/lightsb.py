"""Light Schrödinger Bridge (Korotin, Gushchin, Burnaev, ICLR 2024).

The Schrödinger bridge of the reference ``dX = sigma dW`` (``eps = sigma^2``) between the
source and the target is fitted through its *adjusted potential*, a Gaussian mixture
``v(y) = sum_k alpha_k N(y | r_k, eps S_k)`` (:mod:`sbrun.models.gmm_potential`), by the
simulation-free objective (Korotin et al. 2024, Eq. 12)::

    min_v  E_{x0 ~ source} log c(x0)  -  E_{x1 ~ target} log v(x1),
    c(x) = ∫ exp(<x, y> / eps) v(y) dy   (closed form),

which is, up to a constant, ``KL(pi* || pi_v)`` of the static plans. Source and target
draws are independent: no pairs, no simulation, no inner loop.

Sampling (``method.sampler``):

* ``exact``: ``x1 ~ pi_v(. | x0)`` (a Gaussian mixture, drawn exactly), and the path
  between them from the reference's Brownian bridge (the SB is the mixture of reference
  bridges over its plan); NFE 0.
* ``sde``: ``dX = g(t, X) dt + sigma dW`` with the closed-form drift
  ``g(t, x) = (E[X_1 | X_t = x] - x) / (1 - t)`` through the run's stochastic solver
  (``euler_maruyama``, ``heun_sde``, ...); an ODE solver is refused before training.
* ``auto`` (default): ``sde`` when the chosen solver is stochastic, else ``exact`` (an
  ODE cannot realise the stochastic coupling).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sbrun.data.distributions import StandardGaussian
from sbrun.errors import ConfigError
from sbrun.methods.base import Batch, LossOutput, Method, Phase
from sbrun.models.gmm_potential import COVS, GaussianMixturePotential
from sbrun.solvers.base import Solver, SolveResult

SAMPLERS = ("auto", "exact", "sde")
INITS = ("auto", "gaussian", "samples")
FULL_UP_TO = 10  # cov=auto: full covariances for at most this many components


def check_options(**options: tuple) -> None:
    """``key=(value, valid)``: an unknown ``method.<key>`` is a one-line ``ConfigError``."""
    for key, (value, valid) in options.items():
        if value not in valid:
            raise ConfigError(f"unknown method.{key} '{value}'; valid: {', '.join(valid)}")


def gaussian_bridge_init(x0: Tensor, x1: Tensor, eps: float, k: int,
                         spread: float = 0.3) -> tuple[Tensor, Tensor]:
    """Initial ``r_k: (K, D)`` and shared ``S: (D, D)`` from the Schrödinger bridge between
    the Gaussian fits ``N(m0, A)``, ``N(m1, B)`` of source draws ``x0`` and target draws
    ``x1: (n >= K, D)``: its conditional ``N(m1 + C^T A^-1 (x - m0), B - C^T A^-1 C)`` is
    LightSB's one-component form ``N(r + S x, eps S)`` with ``eps S = B - C^T A^-1 C`` (the
    closed form, :func:`~sbrun.couplings.gaussian.gaussian_cross_cov`). ``K = 1``: that ``r``;
    ``K > 1``: ``r_k = r + spread (y_k - m1 - S (E[x0 | x1 = y_k] - m0))`` with the target
    draw ``y_k`` and its pull-back ``E[x0 | x1 = y_k] = m0 + C B^-1 (y_k - m1)``: at
    ``spread = 1`` component ``k`` sends the pull-back to ``y_k``; smaller, the components
    start bunched around the fitted bridge (each already as wide as it) and split."""
    from sbrun.couplings.gaussian import gaussian_cross_cov
    from sbrun.data.gaussians import Gaussian

    def fit(z: Tensor) -> Gaussian:
        z = z.double().reshape(z.shape[0], -1)
        cov = torch.atleast_2d(torch.cov(z.T))
        ridge = 1e-6 * float(cov.trace()) / cov.shape[0]
        cov = 0.5 * (cov + cov.T) + ridge * torch.eye(cov.shape[0], dtype=cov.dtype)
        return Gaussian(z.mean(0), cov, dtype=torch.float64)

    g0, g1 = fit(x0), fit(x1)
    C = gaussian_cross_cov(g0, g1, math.sqrt(eps))
    lam, U = torch.linalg.eigh(g1.cov - C.T @ torch.linalg.solve(g0.cov, C))
    lam = lam.clamp_min(1e-3 * float(lam.abs().mean()))  # sampling noise: keep S definite
    S = (U * lam) @ U.T / eps
    r = g1.mean - S @ g0.mean
    if k == 1:
        return r[None], S
    y = x1[:k].double().reshape(k, -1)
    back = (y - g1.mean) @ torch.linalg.solve(g1.cov, C.T)  # E[x0 | x1 = y_k] - m0
    return r + spread * (y - g1.mean - back @ S), S


def brownian_eps(sde, method: str) -> float:
    """``eps = sde.sigma^2`` of a Brownian reference; any other reference is refused."""
    if sde.name != "brownian":
        raise ConfigError(f"method={method} bridges the Brownian reference dX = sigma dW: use "
                          f"sde=brownian (got sde={sde.name})")
    return float(sde.sigma) ** 2


class LightSB(Method):
    """LightSB: a Gaussian-mixture adjusted potential, exact conditional sampling.

    Args:
        n_components: ``K`` components of ``v``.
        cov: ``diag`` | ``full`` form of ``S_k``; ``auto`` (default): ``full`` for
            ``n_components <= 10``, else ``diag`` (LightSB's K = 50 diagonal components).
        sampler: ``auto`` | ``exact`` | ``sde`` (module docstring).
        init: ``gaussian``: every ``S_k`` and the ``r_k`` (a third of the way out to target
            draws) from the closed-form bridge between Gaussian fits of source and target
            draws (:func:`gaussian_bridge_init`); ``samples``: LightSB's own, ``r_k`` = target
            draws and ``S_k`` from ``init_log_s``; ``auto`` (default): ``gaussian`` for one
            component (the exact family on Gaussians: training starts at the answer's moment
            fit), else ``samples`` (on the benchmark with K = 10, ``gaussian`` won at
            ``eps = 10``, D = 16 and lost badly at D = 64: 7.4 % against 0.1 %).
        init_log_s: ``init=samples``: initial ``log diag S_k``, or ``auto``: ``eps S_k =
            min(eps, v / 10) I`` with ``v`` the mean per-coordinate variance of target draws
            (a component a tenth as wide as the target, never wider than the reference's
            kernel).
        init_draws: source and target draws behind the initialisation.
        init_spread: ``init=gaussian``: ``spread`` of :func:`gaussian_bridge_init` (1: each
            ``r_k`` sends the pull-back of a target draw to that draw).
    """

    name = "lightsb"
    networks = ("potential",)
    stochastic = True
    uses_reference = True

    def __init__(self, n_components: int = 50, cov: str = "auto", sampler: str = "auto",
                 init: str = "auto", init_log_s: float | str = "auto",
                 init_draws: int = 10_000, init_spread: float | None = None):
        check_options(cov=(cov, ("auto", *COVS)), sampler=(sampler, SAMPLERS), init=(init, INITS))
        if cov == "auto":  # a few full components cost K d^2 and model correlated conditionals
            cov = "full" if int(n_components) <= FULL_UP_TO else "diag"
        if init == "auto":
            init = "gaussian" if int(n_components) == 1 else "samples"
        # a knob the chosen start ignores is refused, not silently accepted
        if init_spread is not None and init != "gaussian":
            raise ConfigError("method.init_spread applies to method.init=gaussian only "
                              f"(this run starts with init={init})")
        if init_log_s != "auto" and init != "samples":
            raise ConfigError("method.init_log_s applies to method.init=samples only "
                              f"(this run starts with init={init})")
        self.init, self.init_draws = init, max(int(init_draws), int(n_components))
        self.init_spread = 0.3 if init_spread is None else float(init_spread)
        if n_components < 1:
            raise ConfigError(f"method.n_components must be >= 1, got {n_components}")
        self.n_components, self.cov, self.sampler = int(n_components), cov, sampler
        if init_log_s != "auto" and not isinstance(init_log_s, (int, float)):
            raise ConfigError(f"method.init_log_s must be a number or auto, got {init_log_s}")
        self.init_log_s = init_log_s

    def bind(self, problem, sde) -> None:
        super().bind(problem, sde)
        self.eps = brownian_eps(sde, self.name)
        if len(problem.shape) != 1:
            raise ConfigError(f"method=lightsb works on vectors, not data of shape {problem.shape}")

    def bridge_sigma(self) -> float:
        return self.sde.sigma

    @property
    def samples_sde(self) -> bool:
        """``sampler=sde`` refuses ODE solvers before training (``check_solver``)."""
        return self.sampler == "sde"

    def model_kwargs(self, name: str) -> dict:
        """The potential's size, ``eps`` and initial ``r_k``, ``S_k`` (``init``; ``build``
        has seeded the global RNG, a resumed run loads its own)."""
        out = {"n_components": self.n_components, "cov": self.cov, "eps": self.eps}
        y = self.problem.target.sample(self.init_draws).reshape(self.init_draws, -1)
        if self.init == "gaussian":
            source = self.problem.source or StandardGaussian(self.problem.shape)
            r, S = gaussian_bridge_init(source.sample(self.init_draws), y, self.eps,
                                        self.n_components, self.init_spread)
            return {**out, "init_means": r.float(), "init_cov": S}
        log_s = self.init_log_s
        if log_s == "auto":
            log_s = math.log(min(1.0, 0.1 * float(y.var(0).mean()) / self.eps))
        return {**out, "init_log_s": float(log_s), "init_means": y[: self.n_components]}

    @staticmethod
    def potential(nets: nn.ModuleDict) -> GaussianMixturePotential:
        pot = nets["potential"]
        pot = getattr(pot, "module", pot)  # DDP / compile wrappers
        pot = getattr(pot, "_orig_mod", pot)
        if not isinstance(pot, GaussianMixturePotential):
            raise ConfigError("method=lightsb needs model=gmm_potential (its Gaussian-mixture "
                              f"potential), not {type(pot).__name__}")
        return pot

    # -- training ----------------------------------------------------------------------
    def loss(self, nets: nn.ModuleDict, batch: Batch, phase: Phase) -> LossOutput:
        loss = nets["potential"](batch.x0, batch.x1).mean()
        return LossOutput(loss, {"loss": loss.detach()})

    # -- sampling ------------------------------------------------------------------------
    def _use_sde(self, solver: Solver | None) -> bool:
        return self.sampler == "sde" or (self.sampler == "auto" and solver is not None
                                         and solver.stochastic)

    def drift(self, nets: nn.ModuleDict, direction: str = "forward"):
        """The bridge's closed-form drift ``(E[X_1 | X_t = x] - x) / (1 - t)``."""
        return self.potential(nets).drift

    def diffusion(self, direction: str = "forward"):
        sigma = self.sde.sigma
        return lambda t: torch.full_like(torch.as_tensor(t, dtype=torch.float32), sigma)

    @torch.no_grad()
    def transport(self, nets: nn.ModuleDict, x: Tensor, solver: Solver, grid: Tensor, *,
                  direction: str = "forward", generator: torch.Generator | None = None,
                  keep: int | None = None) -> SolveResult:
        """``x: (B, D)`` -> ``x1 ~ pi(. | x)``: exactly (and a Brownian-bridge path), or by
        the SDE through ``solver`` (see the module docstring)."""
        if direction != "forward":
            raise ConfigError("lightsb transports forward only (source -> target)")
        if self._use_sde(solver):
            self.sampler_label = f"SDE, {solver.fn.__name__}"
            return solver(self.drift(nets), x, grid, diffusion=self.diffusion(),
                          generator=generator, keep=keep)
        self.sampler_label = "exact mixture + Brownian bridges"
        return self.exact(nets, x, grid, generator, keep)

    @torch.no_grad()
    def exact(self, nets: nn.ModuleDict, x: Tensor, grid: Tensor,
              generator: torch.Generator | None = None, keep: int | None = None) -> SolveResult:
        """``x1 ~ pi(. | x)`` drawn exactly; ``keep`` paths from the reference's bridge."""
        x1 = self.potential(nets).sample(x, 0.0, generator)
        path = None
        if keep:
            path = self.sde.bridge_path(x[:keep], x1[:keep], grid.to(x.dtype), generator)
        return SolveResult(x=x1, nfe=0, t=grid, path=path)

    def figures(self, nets: nn.ModuleDict, evaluation) -> dict:
        """2D: conditional draws and bridge paths from a few source points."""
        if evaluation.x0.shape[1:] != (2,):
            return {}
        from sbrun.plots.conditionals import conditionals_2d

        x0 = evaluation.x0[:4].to(next(nets.parameters()).device)
        xr = x0.repeat_interleave(200, 0)
        res = self.exact(nets, xr, torch.linspace(0, 1, 51), torch.Generator().manual_seed(0),
                         keep=xr.shape[0])
        return {"conditionals": conditionals_2d(
            x0, res.x.reshape(4, 200, 2), res.path.reshape(4, 200, -1, 2), evaluation.target,
            title=f"lightsb, σ={self.sde.sigma:g}: x1 ~ π(·|x0), exact, and bridges")}
