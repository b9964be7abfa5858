"""Flow matching / conditional flow matching (Lipman et al. 2023; Tong et al. 2024), with
minibatch-OT couplings and rectified-flow reflow (Liu et al. 2023).

Regress ``v(x_t, t)`` on the conditional velocity of a path between coupled pairs
``(x0, x1)`` (:mod:`sbrun.sde.interpolants`)::

    x_t = alpha_t x0 + beta_t x1 + sigma sqrt(t (1 - t)) z,
    u_t = d_alpha_t x0 + d_beta_t x1 + sigma (1 - 2t) / (2 sqrt(t (1 - t))) z,

with ``path=linear`` (``alpha = 1 - t``, ``beta = t``: the straight path) or
``trigonometric`` (variance preserving). ``sigma > 0`` samples Brownian bridges of the
reference ``dX = sigma dW`` between the pairs (SB-CFM when the coupling is the entropic
plan with ``eps = sigma^2``); ``sigma_schedule=constant`` instead blurs the whole path by
``sigma`` (``x_t = mu_t + sigma z``, ``u_t = d_alpha x0 + d_beta x1``: I-CFM / OT-CFM of
Tong et al.), and ``auto`` picks the bridge for ``entropic_ot``, the constant otherwise
(Tong et al.'s three named variants). Samples follow the ODE ``dx = v(x, t) dt`` from the
source at ``t = 0``.

Couplings (:func:`couple`): ``independent``, ``exact_ot`` and ``entropic_ot`` (POT
minibatch plans, Tong et al. 2024, Sec. 3.2) and ``paired`` (the pairs of a paired data
set: row ``i`` of the source goes with row ``i`` of the target).

``reflow = k`` adds ``k`` rounds of rectified flow (Liu et al. 2023, Alg. 1): before each
round the pair set is regenerated as ``(x0, ODE_v(x0))`` with the current (EMA) field
and the field is trained on it for ``trainer.steps`` steps (the previous round's field
is the initialisation).

Metrics (Tong et al. 2024, Sec. 5.1): ``path_energy`` ``PE = E int_0^1 |v(t, x_t)|^2
dt`` along the learned ODE paths of the held-out source draws (Euler on
``energy_steps`` steps, independent of the sampling solver), ``ot_cost`` ``W2^2`` between
the held-out source and target draws (exact, POT ``emd2``), and the normalised path
energy ``NPE = |PE - W2^2| / W2^2``: 0 for the straight OT (Benamou–Brenier) paths.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from sbrun.errors import ConfigError
from sbrun.methods.base import Batch, LossOutput, Method, Phase
from sbrun.sde.interpolants import make_interpolant

COUPLINGS = ("independent", "exact_ot", "entropic_ot", "paired")
FM_PATHS = ("linear", "trigonometric")
SIGMA_SCHEDULES = ("bridge", "constant", "auto")


def couple(batch: Batch, coupling: str, sigma: float | None, paired_data: bool) -> tuple[Tensor, Tensor]:
    """Pairs ``(x0, x1)``, each ``(B, *D)``, from a batch under ``coupling``.

    ``independent`` returns independent draws (a paired batch is decoupled by a random
    permutation of ``x1``); ``paired`` keeps a paired data set's rows together;
    ``exact_ot`` / ``entropic_ot`` re-pair by the minibatch plan of cost ``|x - y|^2 / 2``
    (``entropic_ot``: ``eps = sigma^2``, POT ``reg = 2 sigma^2``).
    """
    x0, x1 = batch.x0, batch.x1
    if coupling == "paired":
        if not paired_data:
            raise ConfigError("method.coupling=paired needs paired data (data=npz data.paired=true)")
        return x0, x1
    if coupling == "independent":
        if paired_data:
            perm = torch.randperm(x1.shape[0], generator=batch.generator).to(x1.device)
            x1 = x1[perm]
        return x0, x1
    return ot_pair_fn(coupling, sigma)(x0, x1, generator=batch.generator)


def ot_pair_fn(coupling: str, sigma: float | None):
    """``(x0, x1, generator=g) -> (x0', x1')`` re-pairing by the ``exact_ot`` /
    ``entropic_ot`` minibatch plan (what the trainer prefetches: ``Method.pair_fn``)."""
    from sbrun.couplings import minibatch_pair

    method = "exact" if coupling == "exact_ot" else "sinkhorn_log"
    return partial(minibatch_pair, method=method, sigma=sigma)


def check_coupling(coupling: str, coupling_sigma: float | None) -> None:
    if coupling not in COUPLINGS:
        raise ConfigError(f"unknown method.coupling '{coupling}'; valid: {', '.join(COUPLINGS)}")
    if coupling == "entropic_ot" and not (coupling_sigma or 0) > 0:
        raise ConfigError("method.coupling=entropic_ot needs method.sigma (or coupling_sigma) > 0")


@torch.no_grad()
def euler_energy(drift, x: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """Euler on ``steps`` uniform steps of ``[0, 1]`` with the kinetic energy along the way.

    Returns ``(x_1: (B, *D), energy: (B,))``, ``energy = sum_k h |v(t_k, x_k)|^2``.
    """
    h = 1.0 / steps
    energy = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for k in range(steps):
        t = torch.full((x.shape[0],), k * h, dtype=x.dtype, device=x.device)
        v = drift(t, x)
        energy += h * v.reshape(v.shape[0], -1).double().pow(2).sum(1)
        x = x + h * v
    return x, energy


class FlowMatching(Method):
    """Conditional flow matching with a minibatch coupling.

    Args:
        sigma: width of the Gaussian path (a *sigma*: the std is ``sigma sqrt(t(1-t))``,
            a Brownian bridge, or ``sigma`` with ``sigma_schedule=constant``); 0 gives the
            deterministic path.
        coupling: ``independent`` | ``exact_ot`` | ``entropic_ot`` | ``paired``.
        coupling_sigma: sigma of the entropic coupling (eps = sigma^2); defaults to
            ``sigma`` (SB-CFM: plan and bridge share the reference).
        path: ``linear`` (straight) | ``trigonometric`` (variance preserving).
        sigma_schedule: ``bridge`` (``sigma sqrt(t(1-t))``) | ``constant`` (``sigma``) |
            ``auto`` (bridge for ``entropic_ot``, constant otherwise).
        reflow: rounds of rectified-flow reflow after the first training (0: none).
        reflow_pairs: size of the pair set regenerated before each reflow round.
        reflow_steps: Euler steps of the ODE that generates the reflow pairs.
        energy_steps: Euler steps of the path-energy metric (0: no energy metrics).
        energy_points: source points the path-energy metric moves (images: at most 64 of
            them, ``energy_steps`` network calls each).
    """

    name = "flow-matching"

    def __init__(self, sigma: float = 0.0, coupling: str = "independent",
                 coupling_sigma: float | None = None, path: str = "linear",
                 sigma_schedule: str = "bridge", reflow: int = 0,
                 reflow_pairs: int = 10_000, reflow_steps: int = 100, energy_steps: int = 100,
                 energy_points: int = 2000):
        if sigma < 0:
            raise ConfigError(f"method.sigma must be >= 0, got {sigma}")
        if path not in FM_PATHS:
            raise ConfigError(f"unknown method.path '{path}' for flow matching; valid: "
                              f"{', '.join(FM_PATHS)} (encoder_decoder: method=stochastic-interpolant)")
        if sigma_schedule not in SIGMA_SCHEDULES:
            raise ConfigError(f"unknown method.sigma_schedule '{sigma_schedule}'; valid: "
                              f"{', '.join(SIGMA_SCHEDULES)}")
        for key, value, low in (("reflow", reflow, 0), ("reflow_pairs", reflow_pairs, 1),
                                ("reflow_steps", reflow_steps, 1), ("energy_steps", energy_steps, 0),
                                ("energy_points", energy_points, 1)):
            if value < low:
                raise ConfigError(f"method.{key} must be >= {low}, got {value}")
        self.sigma = float(sigma)
        self.coupling_sigma = coupling_sigma if coupling_sigma is not None else sigma
        check_coupling(coupling, self.coupling_sigma)
        self.coupling, self.path = coupling, path
        if sigma_schedule == "auto":
            sigma_schedule = "bridge" if coupling == "entropic_ot" else "constant"
        self.sigma_schedule = sigma_schedule
        latent = "sqrt" if sigma_schedule == "bridge" else "constant"
        self.interpolant = make_interpolant(path, latent, self.sigma**2)
        self.reflow, self.reflow_pairs, self.reflow_steps = int(reflow), int(reflow_pairs), int(reflow_steps)
        self.energy_steps = int(energy_steps)
        self.energy_points = int(energy_points)
        self.pairs: tuple[Tensor, Tensor] | None = None  # reflow pair set of the current round
        self._ot_cache: dict = {}

    # -- training -------------------------------------------------------------------------
    def phases(self, steps: int) -> list[Phase]:
        """``train``, then one ``reflow_k`` phase per reflow round (``steps`` each)."""
        return [Phase("train", steps)] + [Phase(f"reflow_{k}", steps, index=k)
                                          for k in range(1, self.reflow + 1)]

    def begin_phase(self, phase: Phase, nets: nn.ModuleDict, ctx: dict) -> None:
        """Before a reflow round: ``reflow_pairs`` source draws and their images under the
        current EMA field (a run resumed inside a round regenerates them from the EMA
        field it resumes with)."""
        self.pairs = None
        if phase.index == 0:
            return
        from sbrun.solvers import get_solver, time_grid

        x0 = ctx["data"].source.sample(self.reflow_pairs, ctx["generator"]).to(ctx["device"])
        grid = time_grid(self.reflow_steps)
        x1 = torch.cat([self.transport(nets, chunk, get_solver("euler"), grid).x
                        for chunk in x0.split(4096)])
        self.pairs = (x0, x1.detach())

    def pair_fn(self, phase: Phase):
        """The minibatch-OT coupling of the training phase (prefetched by the trainer)."""
        if phase.index or self.coupling not in ("exact_ot", "entropic_ot"):
            return None
        return ot_pair_fn(self.coupling, self.coupling_sigma)

    def pair(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Pairs of this step: the reflow set in a reflow round, else the coupling's."""
        if batch.coupled:  # already re-paired by pair_fn
            return batch.x0, batch.x1
        if self.pairs is not None:
            idx = torch.randint(0, self.pairs[0].shape[0], (batch.x1.shape[0],),
                                generator=batch.generator).to(batch.x1.device)
            return self.pairs[0][idx], self.pairs[1][idx]
        paired = bool(getattr(getattr(self, "problem", None), "paired", False))
        return couple(batch, self.coupling, self.coupling_sigma, paired)

    def loss(self, nets: nn.ModuleDict, batch: Batch, phase: Phase) -> LossOutput:
        x0, x1 = self.pair(batch)
        t = batch.rand(x0.shape[0])
        z = batch.randn_like(x0) if self.sigma > 0 else None
        xt = self.interpolant.sample(t, x0, x1, z)
        u = self.interpolant.velocity(t, x0, x1, z, gamma_min=1e-4 * self.sigma)
        v = nets["net"](xt, t)
        loss = (v - u).pow(2).reshape(v.shape[0], -1).sum(1).mean()
        return LossOutput(loss, {"loss": loss.item()})

    def drift(self, nets: nn.ModuleDict, direction: str = "forward"):
        net = nets["net"]
        return lambda t, x: net(x, t)

    # -- metrics ----------------------------------------------------------------------------
    def ot_cost(self, x0: Tensor, x1: Tensor) -> float:
        """``W2^2`` between the point clouds (exact, at most 2000 points each), cached."""
        from sbrun.metrics.distances import w2

        key = (x0.data_ptr(), x1.data_ptr(), x0.shape[0], x1.shape[0])
        if key not in self._ot_cache:
            self._ot_cache = {key: w2(x0, x1, max_points=2000,
                                      generator=torch.Generator().manual_seed(0)) ** 2}
        return self._ot_cache[key]

    def metrics(self, nets, x0, result, target) -> dict[str, float]:
        """``path_energy``, ``ot_cost`` and ``normalized_path_energy`` (module docstring)."""
        if not self.energy_steps:
            return {}
        n = self.energy_points if x0.dim() <= 2 else min(self.energy_points, 64)
        x0, target = x0[:n], target[:n]
        _, energy = euler_energy(self.drift(nets), x0, self.energy_steps)
        pe = float(energy.mean())
        cost = self.ot_cost(x0, target)
        return {"path_energy": pe, "ot_cost": cost,
                "normalized_path_energy": abs(pe - cost) / max(cost, 1e-12)}
