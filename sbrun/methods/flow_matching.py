"""Flow matching / conditional flow matching (Lipman et al. 2023; Tong et al. 2024), with
minibatch-OT couplings and rectified-flow reflow (Liu et al. 2023).

Regress ``v(x_t, t)`` on the conditional velocity of a path between coupled pairs
``(x0, x1)`` (:mod:`sbrun.sde.interpolants`), ``path=linear`` (``alpha = 1 - t``,
``beta = t``: the straight path) or ``trigonometric`` (variance preserving). The path's
noise (``path_noise``) is one of two different things:

* ``bridge``: Brownian bridges of the reference ``dX = sigma dW`` (``sigma = sde.sigma``,
  the run's one sigma), ``x_t = alpha_t x0 + beta_t x1 + sigma sqrt(t(1-t)) z``. With the
  entropic coupling (``eps = sigma^2``) and the linear path this is [SF]2M (Tong et al.
  2024, "Simulation-free Schrödinger bridges via score and flow matching"): the score
  ``s`` of the marginals is learned next to the velocity (one network, two heads; loss
  ``|lambda_t s + z|^2``, ``lambda_t = sigma sqrt(t(1-t))``) and ``x1 | x0`` is sampled from
  the Schrödinger bridge's SDE ``dX = [v + sigma^2/2 s] dt + sigma dW``
  (``sampler=ode``: the probability-flow ODE ``dX = v dt``, same marginals, a map).
* ``constant``: I-CFM / OT-CFM's blur of the whole path, ``x_t = mu_t + blur z``,
  ``u_t = d_alpha x0 + d_beta x1`` (``method.blur``, not a reference: ``blur = 0`` gives
  the straight, deterministic path); sampled with the ODE ``dx = v(x, t) dt``.

``path_noise=auto`` picks the bridge for ``entropic_ot``, the constant blur otherwise
(Tong et al.'s three named variants). Only the bridge and the entropic coupling read the
reference (``uses_reference``); otherwise an explicit ``sde.*`` override is refused.

Couplings (:func:`sbrun.couplings.minibatch.couple`): ``independent``, ``exact_ot`` and ``entropic_ot`` (POT
minibatch plans, Tong et al. 2024, Sec. 3.2) and ``paired`` (the pairs of a paired data
set: row ``i`` of the source goes with row ``i`` of the target).

``reflow = k`` adds ``k`` rounds of rectified flow (Liu et al. 2023, Alg. 1): before each
round the pair set is regenerated as ``(x0, ODE_v(x0))`` with the current (EMA) field
and the field is trained on it for ``trainer.steps`` steps (the previous round's field
is the initialisation).

Metrics (Tong et al. 2024, Sec. 5.1; :mod:`sbrun.metrics.path_energy`): ``path_energy``
``PE = E int_0^1 |v(t, x_t)|^2 dt`` along the learned ODE paths of the held-out source
draws (Euler on ``energy_steps`` steps, independent of the sampling solver), ``ot_cost``
``W2^2`` between the held-out source and target draws (exact, POT ``emd2``), and the
normalised path energy ``NPE = |PE - W2^2| / W2^2``: 0 for the straight OT
(Benamou–Brenier) paths.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sbrun.config import refuse_removed
from sbrun.couplings.minibatch import check_coupling, couple, ot_pair_fn
from sbrun.errors import ConfigError, check_choice
from sbrun.methods.base import Batch, LossOutput, Method, Phase
from sbrun.metrics.path_energy import PathEnergy
from sbrun.sde.interpolants import make_interpolant

FM_PATHS = ("linear", "trigonometric")
PATH_NOISES = ("auto", "bridge", "constant")
SAMPLERS = ("auto", "sde", "ode")
class FlowMatching(Method):
    """Conditional flow matching with a minibatch coupling; [SF]2M on Brownian-bridge paths.

    Args:
        coupling: ``independent`` | ``exact_ot`` | ``entropic_ot`` (the minibatch plan of
            the reference: ``eps = sde.sigma^2``) | ``paired``.
        path: ``linear`` (straight) | ``trigonometric`` (variance preserving).
        path_noise: ``bridge`` (Brownian bridges of the reference ``dX = sde.sigma dW``:
            std ``sde.sigma sqrt(t(1-t))``; a score is learned next to the velocity) |
            ``constant`` (I-/OT-CFM's blur of std ``blur`` along the whole path) | ``auto``
            (``bridge`` for ``entropic_ot``, ``constant`` otherwise).
        blur: std of the ``constant`` path blur (Tong et al.'s I-/OT-CFM ``sigma``, e.g.
            0.1); not a reference: it has no bridge and no entropic plan. 0: straight paths.
        sampler: ``auto`` (the bridge SDE ``dX = [v + sigma^2/2 s] dt + sigma dW`` on bridge
            paths, the ODE ``dX = v dt`` otherwise) | ``sde`` | ``ode``.
        reflow: rounds of rectified-flow reflow after the first training (0: none).
        reflow_pairs: size of the pair set regenerated before each reflow round.
        reflow_steps: Euler steps of the ODE that generates the reflow pairs.
        energy_steps: Euler steps of the path-energy metric (0: no energy metrics).
        energy_points: source points the path-energy metric moves (images: at most 64 of
            them, ``energy_steps`` network calls each).
        antithetic: bridge paths only: each pair's bridge draw ``z`` and its mirror ``-z``
            (lower-variance losses, twice the network evaluations per step); ``None``: yes.
    """

    name = "flow-matching"
    family = "interpolant"
    reference_hint = "a reference is read by method.coupling=entropic_ot or method.path_noise=bridge"

    def __init__(self, coupling: str = "independent", path: str = "linear",
                 path_noise: str = "auto", blur: float = 0.0, sampler: str = "auto",
                 reflow: int = 0, reflow_pairs: int = 10_000, reflow_steps: int = 100,
                 energy_steps: int = 100, energy_points: int = 2000,
                 antithetic: bool | None = None, sigma: float | None = None,
                 coupling_sigma: float | None = None, sigma_schedule: str | None = None):
        refuse_removed(sigma=sigma, coupling_sigma=coupling_sigma, sigma_schedule=sigma_schedule)
        if path not in FM_PATHS:
            raise ConfigError(f"unknown method.path '{path}' for flow matching; valid: "
                              f"{', '.join(FM_PATHS)} (encoder_decoder: method=stochastic-interpolant)")
        for key, value, valid in (("path_noise", path_noise, PATH_NOISES),
                                  ("sampler", sampler, SAMPLERS)):
            check_choice(f"method.{key}", value, valid)
        if not blur >= 0:
            raise ConfigError(f"method.blur must be >= 0, got {blur}")
        for key, value, low in (("reflow", reflow, 0), ("reflow_pairs", reflow_pairs, 1),
                                ("reflow_steps", reflow_steps, 1), ("energy_steps", energy_steps, 0),
                                ("energy_points", energy_points, 1)):
            if value < low:
                raise ConfigError(f"method.{key} must be >= {low}, got {value}")
        check_coupling(coupling)
        if path_noise == "auto":
            path_noise = "bridge" if coupling == "entropic_ot" else "constant"
        if path_noise == "bridge" and blur > 0:
            raise ConfigError("method.blur is the constant path's width; bridge paths take "
                              "theirs from the reference (sde.sigma): drop method.blur or set "
                              "method.path_noise=constant")
        self.bridge = path_noise == "bridge"
        if antithetic is not None and not self.bridge:
            raise ConfigError("method.antithetic pairs the bridge draws of [SF]2M; constant paths "
                              "have none: drop it (or use method.path_noise=bridge)")
        self.antithetic = self.bridge and antithetic is not False
        self.second_head = "s" if self.bridge else None  # bridge paths learn the score too
        if sampler == "sde" and not self.bridge:
            raise ConfigError("method.sampler=sde samples the Schrödinger bridge and needs bridge "
                              "paths (method.path_noise=bridge or coupling=entropic_ot)")
        self.coupling, self.path, self.path_noise, self.blur = coupling, path, path_noise, float(blur)
        self.sampler = sampler
        self.sde_sampling = self.bridge and sampler != "ode"
        self.uses_reference = self.bridge or coupling == "entropic_ot"
        self.stochastic = self.sde_sampling
        self.networks = ("net",)
        self.reflow, self.reflow_pairs, self.reflow_steps = int(reflow), int(reflow_pairs), int(reflow_steps)
        if self.reflow and self.bridge:
            raise ConfigError("method.reflow regenerates pairs with the ODE of straight paths: "
                              "use it without bridge paths (method.path_noise=constant)")
        self.energy = PathEnergy(energy_steps, energy_points)
        self.pairs: tuple[Tensor, Tensor] | None = None  # reflow pair set of the current round
        self._resumed_pairs: tuple[Tensor, Tensor] | None = None  # from a checkpoint
        if not self.bridge:
            self.interpolant = make_interpolant(path, "constant", self.blur**2)

    def bind(self, problem, sde) -> None:
        """Bridge paths are Brownian bridges of ``sde`` (``dX = sigma dW``)."""
        super().bind(problem, sde)
        if self.uses_reference and sde.sigma is None:
            raise ConfigError(f"method=flow-matching with coupling={self.coupling}, "
                              f"path_noise={self.path_noise} needs a Brownian reference "
                              f"dX = sigma dW (sde=brownian), got sde={sde.name}")
        if self.bridge:
            self.interpolant = make_interpolant(self.path, "sqrt", sde.sigma**2)

    @property
    def reference_sigma(self) -> float:
        """The reference's sigma (bridge paths, entropic coupling): ``sde.sigma``."""
        return float(self.sde.sigma)

    def bridge_sigma(self) -> float | None:
        """``sde.sigma`` when the method samples the Schrödinger bridge: entropic coupling,
        Brownian-bridge paths of the linear path, the bridge SDE ([SF]2M)."""
        if self.coupling == "entropic_ot" and self.bridge and self.path == "linear":
            return float(self.sde.sigma)
        return None

    @property
    def samples_sde(self) -> bool:
        """The bridge SDE needs a stochastic solver (checked before training)."""
        return self.sde_sampling

    def model_kwargs(self, name: str) -> dict:
        return {"out_mult": 2} if self.bridge else {}

    # -- training -------------------------------------------------------------------------
    def phases(self, steps: int) -> list[Phase]:
        """``train``, then one ``reflow_k`` phase per reflow round (``steps`` each)."""
        return [Phase("train", steps)] + [Phase(f"reflow_{k}", steps, index=k)
                                          for k in range(1, self.reflow + 1)]

    def begin_phase(self, phase: Phase, nets: nn.ModuleDict, ctx: dict) -> None:
        """Before a reflow round: ``reflow_pairs`` source draws and their images under the
        current EMA field (a run resumed inside a round takes them from its checkpoint)."""
        resumed_pairs, self._resumed_pairs = self._resumed_pairs, None
        self.pairs = None
        if phase.index == 0:
            return
        if ctx.get("phase_step", 0) > 0 and resumed_pairs is not None:
            self.pairs = tuple(p.to(ctx["device"]) for p in resumed_pairs)
            return
        from sbrun.solvers import get_solver, time_grid

        x0 = ctx["data"].source.sample(self.reflow_pairs, ctx["generator"]).to(ctx["device"])
        grid = time_grid(self.reflow_steps)
        x1 = torch.cat([get_solver("euler")(self.drift(nets, sde=False), chunk, grid).x
                        for chunk in x0.split(4096)])
        self.pairs = (x0, x1.detach())

    # -- checkpoint: a reflow round's pair set, so a run resumed inside it trains on the same
    def state_dict(self) -> dict:
        """The current reflow round's pairs (tensors only; empty outside a reflow round)."""
        return {} if self.pairs is None else {"pairs": [p.cpu() for p in self.pairs]}

    def load_state_dict(self, state: dict) -> None:
        pairs = state.get("pairs")
        self._resumed_pairs = None if pairs is None else (pairs[0], pairs[1])

    def pair_fn(self, phase: Phase):
        """The minibatch-OT coupling of the training phase (prefetched by the trainer)."""
        if phase.index or self.coupling not in ("exact_ot", "entropic_ot"):
            return None
        return ot_pair_fn(self.coupling, self.reference_sigma if self.coupling == "entropic_ot"
                          else None)

    def pair(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Pairs of this step: the reflow set in a reflow round, else the coupling's."""
        if batch.coupled:  # already re-paired by pair_fn
            return batch.x0, batch.x1
        if self.pairs is not None:
            idx = torch.randint(0, self.pairs[0].shape[0], (batch.x1.shape[0],),
                                generator=batch.generator).to(batch.x1.device)
            return self.pairs[0][idx], self.pairs[1][idx]
        paired = self.problem is not None and self.problem.paired
        sigma = self.reference_sigma if self.coupling == "entropic_ot" else None
        return couple(batch, self.coupling, sigma, paired)

    def fields(self, nets: nn.ModuleDict, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(v, s)`` at ``x: (B, *D)``, ``t: (B,)``: the velocity and, on bridge paths, the
        score of the marginals (one network, two output heads)."""
        out = nets["net"](x, t)
        return (out[:, 0], out[:, 1]) if self.bridge else (out, None)

    def loss(self, nets: nn.ModuleDict, batch: Batch, phase: Phase) -> LossOutput:
        x0, x1 = self.pair(batch)
        t = batch.rand(x0.shape[0])
        if not self.bridge:
            z = batch.randn_like(x0) if self.blur > 0 else None
            xt, u = self.interpolant.sample_and_velocity(t, x0, x1, z)
            v = nets["net"](xt, t)
            loss = (v - u).pow(2).reshape(v.shape[0], -1).sum(1).mean()
            return LossOutput(loss, {"loss": loss.detach()})
        # [SF]2M (Tong et al. 2024): bridge draws x_t = mu_t + lambda_t z (antithetic: also
        # mu_t - lambda_t z, twice the network evaluations), u_t = x1 - x0 + lambda_t' z, and
        # the lambda_t^2-weighted score regression |lambda_t s(x_t) + z|^2 (the conditional
        # score is -z / lambda_t)
        z = batch.randn_like(x0)
        c = self.interpolant.coefficients(t, x0)
        mean = c.alpha_t * x0 + c.beta_t * x1
        d_mean = c.d_alpha_t * x0 + c.d_beta_t * x1
        d_lam, lam = c.gamma_d_gamma_t / c.gamma_t.clamp_min(1e-4 * self.reference_sigma), c.gamma_t
        if self.antithetic:
            mean, d_mean, d_lam, lam, t = (torch.cat([a, a]) for a in (mean, d_mean, d_lam, lam, t))
            z = torch.cat([z, -z])
        v, s = self.fields(nets, mean + lam * z, t)
        loss_v = (v - d_mean - d_lam * z).pow(2).reshape(v.shape[0], -1).sum(1).mean()
        loss_s = (lam * s + z).pow(2).reshape(s.shape[0], -1).sum(1).mean()
        loss = loss_v + loss_s
        return LossOutput(loss, {"loss": loss.detach(), "loss_v": loss_v.detach(),
                                 "loss_s": loss_s.detach()})

    def drift(self, nets: nn.ModuleDict, direction: str = "forward", sde: bool | None = None):
        """``v`` (the probability-flow ODE) or ``v + sigma^2/2 s`` (the bridge SDE)."""
        sde = self.sde_sampling if sde is None else sde
        half_var = 0.5 * self.reference_sigma**2 if sde else 0.0

        def f(t: Tensor, x: Tensor) -> Tensor:
            v, s = self.fields(nets, x, t)
            return v + half_var * s if sde else v

        return f

    def diffusion(self, direction: str = "forward"):
        """``sde.sigma`` for the bridge SDE, ``None`` for the ODE."""
        if not self.sde_sampling:
            return None
        return lambda t: torch.full_like(torch.as_tensor(t, dtype=torch.float32), self.reference_sigma)

    def metrics(self, nets, x0, result, target) -> dict[str, float]:
        """``path_energy``, ``ot_cost`` and ``normalized_path_energy`` (module docstring)."""
        return self.energy(self.drift(nets, sde=False), x0, target)
