"""Stochastic interpolants (Albergo & Vanden-Eijnden 2023; Albergo, Boffi & Vanden-Eijnden
2023; seed 004): deterministic and stochastic transport from one regression.

Interpolant (:mod:`sbrun.sde.interpolants`), ``(x0, x1)`` from a coupling, ``z ~ N(0, I)``
independent: ``x_t = alpha_t x0 + beta_t x1 + gamma_t z`` with ``gamma_0 = gamma_1 = 0``.
Its density ``rho_t`` solves a transport equation with velocity
``b(t, x) = E[d_alpha_t x0 + d_beta_t x1 + d_gamma_t z | x_t = x]``, and its score is
``s(t, x) = -E[z | x_t = x] / gamma_t = -eta_z(t, x) / gamma_t``. Both are learned by the
quadratic losses of seed 004, the score either as the denoiser ``eta_z``
(``score_param=eta``) or directly (``score``)::

    L_b   = int E[ 1/2 |b(t, x_t)|^2 - (d_alpha x0 + d_beta x1 + d_gamma z) . b(t, x_t) ] dt,
    L_eta = int E[ 1/2 |eta(t, x_t)|^2 - z . eta(t, x_t) ] dt,
    L_s   = int E[ 1/2 |s(t, x_t)|^2 + z . s(t, x_t) / gamma_t ] dt,

with antithetic draws ``x_t^(+-) = I_t +- gamma_t z`` (Albergo et al. 2023, Sec. 6.1): the
``d_gamma z`` and ``z / gamma`` terms, whose variances are infinite at ``t = 0, 1``,
cancel to first order. ``L_eta`` is ``L_s`` weighted by ``gamma_t^2`` (score errors near
the ends count less, where ``s = -eta / gamma`` amplifies eta's); on the d = 128 mixture
of ``conf/experiment/si_kl_vs_epsilon.yaml`` it gave the lower KL, hence the default.

As a Schrödinger bridge (:attr:`StochasticInterpolant.is_bridge`): the entropic coupling of
the reference ``dX = sigma dW`` (``eps = sigma^2``), the linear path, ``gamma_t = sigma
sqrt(t(1-t))`` (``a = sigma^2``) and ``epsilon = sigma^2 / 2``: the interpolant's law is then
the mixture of the reference's bridges over the entropic plan, and its forward SDE ``dX =
(b + sigma^2/2 s) dt + sigma dW`` the bridge's ([SF]2M's). Unset ``a`` and ``epsilon`` give
exactly that; the oracle scores it against the closed form and ``sampler=auto`` samples the SDE.

Sampling from the source at ``t = 0``: the probability-flow ODE ``dX = b dt``, or the
forward SDE with diffusion level ``epsilon(t)`` (Fokker–Planck ``d_t rho + div((b + eps s)
rho) = eps Lap rho`` has the same marginals ``rho_t`` for every ``eps``)::

    dX = (b + epsilon(t) s) dt + sqrt(2 epsilon(t)) dW,   s = -eta / gamma.

With ``score_param=eta`` the score near the ends is a ratio of two vanishing quantities,
read at ``t`` clipped to ``[t_clip, 1 - t_clip]``; the SDE's last step adds no noise, and
``epsilon_schedule=vanishing`` (``epsilon(t) = epsilon gamma(t)^2 / gamma(1/2)^2``) removes
the singularity. Larger ``epsilon`` corrects errors of ``b`` (``KL(rho_1 || rho_hat_1) <=
1/(4 eps) int E|b_F - b_F_hat|^2``, ``b_F = b + eps s``) but multiplies the learned score's
error and stiffens the SDE: the best ``epsilon`` is intermediate, near ``(E_b / E_s)^(1/2)``
(:mod:`sbrun.metrics.interpolant_truth`; ``scripts/si_epsilon_star.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sbrun.config import refuse_removed
from sbrun.couplings.minibatch import check_coupling, couple
from sbrun.errors import ConfigError, check_choice
from sbrun.methods.base import Batch, LossOutput, Method, Phase
from sbrun.sde.base import expand_t
from sbrun.sde.interpolants import make_interpolant
from sbrun.solvers import Solver, SolveResult, solver_extras

SAMPLERS = ("auto", "sde", "ode")
SCHEDULES = ("constant", "vanishing")
SCORE_PARAMS = ("score", "eta")
HEADS = ("separate", "shared")


def _dot(u: Tensor, v: Tensor) -> Tensor:
    """Per-sample inner product of ``(B, *D)`` tensors -> ``(B,)``."""
    return (u * v).reshape(u.shape[0], -1).sum(1)


class StochasticInterpolant(Method):
    """Learn ``b`` and ``s`` (or ``eta_z``) of a stochastic interpolant; sample by ODE or SDE.

    Args:
        path: ``linear`` | ``trigonometric`` | ``encoder_decoder`` (alpha, beta).
        gamma: ``sqrt`` (``sqrt(a t (1 - t))``) | ``sin2`` (``sqrt(a) sin^2(pi t)``).
        a: scale of the latent ``gamma`` (not a reference sigma); 0 gives a deterministic
            interpolant (ODE only). ``None``: ``sde.sigma^2`` with ``coupling=entropic_ot``
            (the bridge's ``gamma_t = sigma sqrt(t(1-t))``), else 1.
        epsilon: diffusion level of the forward SDE (noise ``sqrt(2 epsilon) dW``); 0: the
            probability-flow ODE. ``None``: ``sde.sigma^2 / 2`` with ``coupling=entropic_ot``
            (noise ``sigma dW``: the bridge's SDE), else 1.
        epsilon_schedule: ``constant`` | ``vanishing`` (``epsilon gamma(t)^2 / gamma(1/2)^2``).
        sampler: ``auto`` (the SDE with a stochastic solver, the ODE otherwise) | ``sde``
            | ``ode``.
        coupling: ``independent`` | ``exact_ot`` | ``entropic_ot`` (the reference's plan,
            ``eps = sde.sigma^2``) | ``paired`` (:func:`sbrun.couplings.minibatch.couple`).
        score_param: ``eta`` (a network for ``eta_z``, loss ``L_eta``, ``s = -eta / gamma``)
            | ``score`` (a network for ``s``, loss ``L_s``).
        heads: ``shared`` (one network with two output heads: half the cost, and the lower
            KL on the d = 128 mixture) | ``separate`` (networks ``b`` and ``s`` or ``eta``).
        antithetic: antithetic latent draws in the losses.
        t_clip: with ``score_param=eta`` the score is read at ``t`` clipped to
            ``[t_clip, 1 - t_clip]``.
    """

    name = "stochastic-interpolant"
    family = "interpolant"
    solver_extras = ("score",)
    reference_hint = "a reference is read by method.coupling=entropic_ot"

    def __init__(self, path: str = "linear", gamma: str = "sqrt", a: float | None = None,
                 epsilon: float | None = None, epsilon_schedule: str = "constant",
                 sampler: str = "auto", coupling: str = "independent",
                 score_param: str = "eta", heads: str = "shared", antithetic: bool = True,
                 t_clip: float = 1e-3, coupling_sigma: float | None = None):
        refuse_removed(coupling_sigma=coupling_sigma)
        for key, value, valid in (("sampler", sampler, SAMPLERS), ("heads", heads, HEADS),
                                  ("score_param", score_param, SCORE_PARAMS),
                                  ("epsilon_schedule", epsilon_schedule, SCHEDULES)):
            check_choice(f"method.{key}", value, valid)
        if a is not None and not a >= 0:
            raise ConfigError(f"method.a must be >= 0, got {a}")
        if not 0 < t_clip < 0.5:
            raise ConfigError(f"method.t_clip must be in (0, 0.5), got {t_clip}")
        check_coupling(coupling)
        if gamma == "constant":
            raise ConfigError("method.gamma=constant is flow matching's blurred path, not an "
                              "interpolant (gamma_0 = gamma_1 = 0): use sqrt or sin2")
        self.path, self.gamma_name, self.schedule = path, gamma, epsilon_schedule
        self.sampler, self.coupling = sampler, coupling
        self.heads, self.antithetic, self.t_clip = heads, bool(antithetic), float(t_clip)
        self.score_param = score_param
        self._last_sde = False  # whether the last transport sampled the SDE (metrics, titles)
        # the entropic coupling is the reference's (eps = sde.sigma^2); a and epsilon left
        # unset then default to the Schrödinger bridge's (see bind), else to 1 and 1
        self.uses_reference = coupling == "entropic_ot"
        self._a, self._epsilon = a, epsilon
        self._configure(1.0 if a is None else a, 1.0 if epsilon is None else epsilon)

    def _configure(self, a: float, epsilon: float) -> None:
        """Build the interpolant of latent scale ``a`` and the sampler of level ``epsilon``."""
        sampler = self.sampler
        if not epsilon >= 0:
            raise ConfigError(f"method.epsilon must be >= 0, got {epsilon}")
        self.interpolant = make_interpolant(self.path, self.gamma_name, a)
        if not self.interpolant.stochastic and epsilon > 0 and sampler != "ode":
            raise ConfigError("method.a = 0 has no latent, hence no score: set method.epsilon=0 "
                              "(probability-flow ODE) or method.a > 0")
        self.a, self.epsilon = float(a), float(epsilon)
        self.stochastic = self.epsilon > 0 and sampler != "ode" and self.interpolant.stochastic
        second = "s" if self.score_param == "score" else "eta"  # the field learned next to b
        self.second_head = second if self.interpolant.stochastic else None  # no latent: b alone
        self.networks = (("b",) if self.second_head is None else ("net",) if self.heads == "shared"
                         else ("b", second))
        self._gamma_half = float(self.interpolant.latent.gamma(torch.tensor([0.5], dtype=torch.float64)))

    def set_epsilon(self, epsilon: float) -> None:
        """Sample at diffusion level ``epsilon`` (``0``: the ODE); ``b``, ``s`` do not change."""
        self._configure(self.a, float(epsilon))

    def bind(self, problem, sde) -> None:
        """With ``coupling=entropic_ot`` the reference is ``sde`` (``eps = sigma^2``), and an
        unset ``a`` / ``epsilon`` become the Schrödinger bridge's: ``gamma_t = sigma
        sqrt(t(1-t))`` (``a = sigma^2``) and the matching ``epsilon = sigma^2 / 2`` (noise
        ``sqrt(2 eps) = sigma``)."""
        super().bind(problem, sde)
        if not self.uses_reference:
            return
        if sde.sigma is None:
            raise ConfigError("method.coupling=entropic_ot needs a Brownian reference "
                              f"dX = sigma dW (sde=brownian), got sde={sde.name}")
        s2 = float(sde.sigma) ** 2
        self._configure(s2 if self._a is None else self._a,
                        0.5 * s2 if self._epsilon is None else self._epsilon)

    @property
    def is_bridge(self) -> bool:
        """Whether this interpolant IS the Schrödinger bridge of ``dX = sigma dW``: the
        entropic coupling, the linear path, ``gamma_t = sigma sqrt(t(1-t))`` and the forward
        SDE with ``epsilon = sigma^2 / 2`` (constant)."""
        sde = self.sde
        if not self.uses_reference or sde is None or sde.sigma is None:
            return False
        s2 = float(sde.sigma) ** 2
        return (self.path == "linear" and self.gamma_name == "sqrt" and self.schedule == "constant"
                and abs(self.a - s2) <= 1e-9 * s2 and abs(self.epsilon - 0.5 * s2) <= 1e-9 * s2
                and self.sampler != "ode")

    def bridge_sigma(self) -> float | None:
        return float(self.sde.sigma) if self.is_bridge else None

    def model_kwargs(self, name: str) -> dict:
        return {"out_mult": 2} if name == "net" else {}

    # -- the two fields -------------------------------------------------------------------
    def fields(self, nets: nn.ModuleDict, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(b, s or eta)`` at ``x: (B, *D)``, ``t: (B,)``; the second is None without a latent."""
        if "net" in nets:
            out = nets["net"](x, t)
            return out[:, 0], out[:, 1]
        return nets["b"](x, t), (nets[self.second_head](x, t) if self.second_head in nets else None)

    def second_field(self, nets: nn.ModuleDict, x: Tensor, t: Tensor) -> Tensor:
        return self.fields(nets, x, t)[1] if "net" in nets else nets[self.second_head](x, t)

    def gamma(self, t: Tensor, like: Tensor) -> Tensor:
        return self.interpolant.latent.gamma(expand_t(t, like))

    def epsilon_t(self, t: Tensor) -> Tensor:
        """``epsilon(t)`` for ``t: (B,)``."""
        if self.schedule == "constant":
            return torch.full_like(t, self.epsilon)
        g = self.interpolant.latent.gamma(t)
        return self.epsilon * (g / self._gamma_half) ** 2

    def score(self, nets: nn.ModuleDict, t: Tensor, x: Tensor) -> Tensor:
        """``s(t, x)``, ``(B, *D)``: the ``s`` network, or ``-eta(t_c, x) / gamma(t_c)`` with
        ``t_c`` = ``t`` clipped to ``[t_clip, 1 - t_clip]``."""
        if self.score_param == "score":
            return self.second_field(nets, x, t)
        tc = t.clamp(self.t_clip, 1 - self.t_clip)
        return -self.second_field(nets, x, tc) / self.gamma(tc, x)

    def loss(self, nets: nn.ModuleDict, batch: Batch, phase: Phase) -> LossOutput:
        paired = self.problem is not None and self.problem.paired
        sigma = float(self.sde.sigma) if self.uses_reference else None
        x0, x1 = couple(batch, self.coupling, sigma, paired)
        t = batch.rand(x0.shape[0])
        c = self.interpolant.coefficients(t, x0)
        mean = c.alpha_t * x0 + c.beta_t * x1
        d_mean = c.d_alpha_t * x0 + c.d_beta_t * x1
        if not self.interpolant.stochastic:
            b = nets["b"](mean, t)
            loss = (0.5 * b.pow(2).reshape(b.shape[0], -1).sum(1) - _dot(d_mean, b)).mean()
            return LossOutput(loss, {"loss": loss.detach(), "loss_b": loss.detach()})
        z = batch.randn_like(x0)
        # gamma' = gamma gamma' / gamma, floored: finite for times drawn at the very ends
        d_gamma = c.gamma_d_gamma_t / c.gamma_t.clamp_min(1e-6)
        if self.antithetic:
            mean, d_mean, d_gamma, t = (torch.cat([v, v]) for v in (mean, d_mean, d_gamma, t))
            gz = torch.cat([c.gamma_t * z, -c.gamma_t * z])
            z = torch.cat([z, -z])
        else:
            gz = c.gamma_t * z
        b, second = self.fields(nets, mean + gz, t)
        loss_b = (0.5 * b.pow(2).reshape(b.shape[0], -1).sum(1) - _dot(d_mean + d_gamma * z, b)).mean()
        if self.score_param == "score":  # L_s: 1/2 |s|^2 + z . s / gamma
            inv_gamma = 1 / torch.cat([c.gamma_t, c.gamma_t] if self.antithetic else [c.gamma_t])
            lin = _dot(z * inv_gamma.clamp_max(1e6), second)
        else:  # L_eta: 1/2 |eta|^2 - z . eta
            lin = -_dot(z, second)
        loss_2 = (0.5 * second.pow(2).reshape(second.shape[0], -1).sum(1) + lin).mean()
        loss = loss_b + loss_2
        return LossOutput(loss, {"loss": loss.detach(), "loss_b": loss_b.detach(),
                                 f"loss_{self.second_head}": loss_2.detach()})

    # -- sampling -------------------------------------------------------------------------
    def uses_sde(self, solver: Solver | None = None) -> bool:
        """Whether transports follow the SDE (``epsilon > 0``; ``sampler=sde``, the bridge or
        a stochastic solver), not the probability-flow ODE."""
        if self.epsilon == 0 or self.sampler == "ode":
            return False
        return self.sampler == "sde" or self.is_bridge or (solver is not None and solver.stochastic)

    @property
    def samples_sde(self) -> bool:
        """``sampler=sde`` or the bridge (``sampler=auto``): ODE solvers are refused."""
        return self.uses_sde()

    def drift(self, nets: nn.ModuleDict, direction: str = "forward", sde: bool = False):
        """``b`` (ODE) or ``b + epsilon(t) s`` (forward SDE)."""

        def f(t: Tensor, x: Tensor) -> Tensor:
            if not sde:
                return self.fields(nets, x, t)[0]
            b, second = self.fields(nets, x, t)
            inside = bool(((t >= self.t_clip) & (t <= 1 - self.t_clip)).all())
            if self.score_param == "score":
                s = second
            else:
                s = -second / self.gamma(t, x) if inside else self.score(nets, t, x)
            return b + expand_t(self.epsilon_t(t), x) * s

        return f

    def diffusion(self, direction: str = "forward", sde: bool = False):
        """``sqrt(2 epsilon(t))`` for the SDE, ``None`` for the ODE."""
        return (lambda t: (2 * self.epsilon_t(t)).sqrt()) if sde else None

    def transport(self, nets: nn.ModuleDict, x: Tensor, solver: Solver, grid: Tensor, *,
                  direction: str = "forward", generator: torch.Generator | None = None,
                  keep: int | None = None) -> SolveResult:
        sde = self._last_sde = self.uses_sde(solver)
        extras = {}
        if self.interpolant.stochastic:
            extras = solver_extras(solver, score=lambda t, y: self.score(nets, t, y),
                                   noise_last_step=False)
        return solver(self.drift(nets, sde=sde), x, grid, diffusion=self.diffusion(sde=sde),
                      generator=generator, keep=keep, **extras)

    def metrics(self, nets, x0, result, target) -> dict[str, float]:
        """``sde_epsilon``: the diffusion level the evaluated transport used (0: the ODE)."""
        return {"sde_epsilon": self.epsilon if self._last_sde else 0.0}

    def figures(self, nets, evaluation) -> dict:
        """Vectors in d > 2: draws on the target's principal plane (seed 004's cross section)."""
        from sbrun.plots.scatter import principal_plane

        eps = self.epsilon if self._last_sde else 0.0
        fig = principal_plane(evaluation.x0, evaluation.target, evaluation.result.x,
                              f"{self.name}, ε={eps:g}")
        return {} if fig is None else {"projection": fig}
