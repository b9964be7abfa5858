"""Score-based generative modelling through SDEs (Song et al. 2021).

A noising SDE (``sde=vp|subvp|ve|brownian``; :mod:`sbrun.sde.noising`) takes data at
noising time ``s = 0`` to its prior at ``s = 1``. A network learns the score of its
marginals by denoising score matching, parameterised by the noise (Ho et al. 2020):

    x_s = alpha_s x0 + sigma_s z,   eps_theta(c_in x_s, s) ~ z,   score = -eps_theta / sigma_s,

with ``c_in = 1 / sqrt(alpha_s^2 + sigma_s^2)`` (unit-scale data; Karras et al. 2022).
``weighting=uniform`` minimises ``E |eps_theta - z|^2`` (``lambda(s) = sigma_s^2`` on the
score); ``weighting=likelihood`` uses ``lambda(s) = g(s)^2`` (Song et al. 2021b), whose
objective bounds the NLL. Generation runs in sbrun time ``t`` (prior at 0, data at 1,
``s = 1 - (1 - s_min) t``): the reverse SDE (eq. 6) with a stochastic solver, the
probability-flow ODE (eq. 13) with an ODE solver, the Gaussian posterior kernel with
``solver=ancestral``, Langevin-corrected with ``solver=pc``. The exact NLL of held-out
data integrates the probability-flow ODE with its divergence (App. D.2).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sbrun.data.distributions import Problem
from sbrun.data.gaussians import Gaussian
from sbrun.errors import ConfigError
from sbrun.methods.base import Batch, LossOutput, Method, Phase
from sbrun.sde.base import ReferenceSDE
from sbrun.sde.noising import NoisingSDE, as_noising
from sbrun.solvers import Solver, SolveResult, solver_extras
from sbrun.solvers.likelihood import DIVERGENCES, LogLikelihood, log_likelihood

SAMPLERS = ("auto", "sde", "ode")
WEIGHTINGS = ("uniform", "likelihood")


def stratified(batch: Batch, n: int) -> Tensor:
    """``n`` stratified uniform draws ``(u + k / n) mod 1`` (low-variance times; Kingma et al.
    2021, App. I), in a random order."""
    u = (batch.rand(1) + torch.arange(n, device=batch.x1.device) / n) % 1.0
    return u[torch.randperm(n, generator=batch.generator).to(u.device)]


class ScoreSDE(Method):
    """Continuous-time denoising score matching for any noising SDE.

    Args:
        weighting: ``uniform`` | ``likelihood`` (``g^2``; importance-free, normalised).
        sampler: ``sde`` (reverse SDE) | ``ode`` (probability flow) | ``auto`` (the SDE
            with a stochastic solver, the ODE with an ODE solver).
        likelihood: report the exact ``nll`` (nats per sample) of held-out data and, for
            images, ``bpd``.
        nll_points: held-out points the NLL is averaged over (images: at most 32).
        divergence: ``auto`` (exact for d <= 10) | ``exact`` | ``hutchinson``.
        nll_rtol, nll_atol: tolerances of the adaptive (dopri5) likelihood ODE.
        noise_draws: ``(s, z)`` draws per data row and step (a larger effective batch for
            the noisy regression at no data cost).
    """

    name = "score-sde"
    family = "noising"
    generative_only = True
    solver_extras = ("kernel", "score")
    sde: NoisingSDE

    def __init__(self, weighting: str = "uniform", sampler: str = "auto", likelihood: bool = True,
                 nll_points: int = 500, divergence: str = "auto", nll_rtol: float = 1e-5,
                 nll_atol: float = 1e-5, noise_draws: int = 1):
        for key, value, valid in (("weighting", weighting, WEIGHTINGS),
                                  ("sampler", sampler, SAMPLERS),
                                  ("divergence", divergence, DIVERGENCES)):
            if value not in valid:
                raise ConfigError(f"unknown method.{key} '{value}'; valid: {', '.join(valid)}")
        for key, value in (("nll_points", nll_points), ("noise_draws", noise_draws)):
            if value < 1:
                raise ConfigError(f"method.{key} must be >= 1, got {value}")
        self.noise_draws = int(noise_draws)
        # the reverse SDE / ancestral chain (sampler sde, or auto with a stochastic solver)
        # draws x1 | x0 at random; only sampler=ode is a deterministic map
        self.stochastic = sampler != "ode"
        self.weighting, self.sampler, self.likelihood = weighting, sampler, bool(likelihood)
        self.nll_points, self.divergence = int(nll_points), divergence
        self.nll_rtol, self.nll_atol = float(nll_rtol), float(nll_atol)

    @property
    def samples_sde(self) -> bool:
        """True when the method insists on the reverse SDE (then ODE solvers are refused)."""
        return self.sampler == "sde"

    def bind(self, problem: Problem, sde: ReferenceSDE) -> None:
        super().bind(problem, as_noising(sde))
        self.prior = self.sde.prior_distribution(problem.shape)
        s = torch.linspace(self.sde.s_min, 1.0, 2001, dtype=torch.float64)
        # E_s[g^2 / sigma^2] on [s_min, 1]: keeps the likelihood-weighted loss near unit scale
        self._lik_norm = float((self.sde.diffusion(s) ** 2 / self.sde.var(s)).mean())

    # -- parameterisation (noising time s: (B,)) ----------------------------------------
    def eps(self, nets: nn.ModuleDict, x: Tensor, s: Tensor) -> Tensor:
        """Predicted noise ``eps_theta(x, s)``; ``x: (B, *D)``, ``s: (B,)``."""
        alpha, sigma = self.sde.coefficients(s, x)
        c_in = (alpha**2 + sigma**2).rsqrt()
        return nets["net"](c_in * x, torch.as_tensor(s).to(x))

    def score(self, nets: nn.ModuleDict, x: Tensor, s: Tensor) -> Tensor:
        """``grad log p_s(x) = -eps_theta / sigma_s``."""
        return -self.eps(nets, x, s) / self.sde.coefficients(s, x)[1]

    def denoise(self, nets: nn.ModuleDict, x: Tensor, s: Tensor) -> Tensor:
        """``E[x0 | x_s = x] = (x - sigma_s eps_theta) / alpha_s`` (Tweedie)."""
        alpha, sigma = self.sde.coefficients(s, x)
        return (x - sigma * self.eps(nets, x, s)) / alpha

    # -- training ------------------------------------------------------------------------
    def dsm_loss(self, nets: nn.ModuleDict, x0: Tensor, s: Tensor, z: Tensor) -> Tensor:
        """Per-sample denoising score matching loss at noising times ``s: (B,)`` -> ``(B,)``."""
        xs = self.sde.marginal(s, x0).mean + self.sde.coefficients(s, x0)[1] * z
        err = (self.eps(nets, xs, s) - z).pow(2).reshape(x0.shape[0], -1).sum(1)
        if self.weighting == "likelihood":  # g^2 |s_theta - grad log p|^2 = g^2/sigma^2 |eps err|^2
            w = self.sde.diffusion(s) ** 2 / self.sde.var(torch.as_tensor(s, dtype=torch.float64))
            err = err * (w / self._lik_norm).to(err)
        return err

    def loss(self, nets: nn.ModuleDict, batch: Batch, phase: Phase) -> LossOutput:
        x0 = batch.x1.repeat_interleave(self.noise_draws, 0)  # data: the target at t = 1
        s = self.sde.s_min + (1 - self.sde.s_min) * stratified(batch, x0.shape[0])
        loss = self.dsm_loss(nets, x0, s, batch.randn_like(x0)).mean()
        return LossOutput(loss, {"loss": loss.detach()})

    # -- generation in sbrun time t -----------------------------------------------------
    def _prob_flow(self, probability_flow: bool | None) -> bool:
        return self.sampler != "sde" if probability_flow is None else probability_flow

    def drift(self, nets: nn.ModuleDict, direction: str = "forward",
              probability_flow: bool | None = None):
        """``dx/dt = ds/dt [f x - c g^2 score]``, ``c = 1`` (reverse SDE) or ``1/2`` (ODE)."""
        pf = self._prob_flow(probability_flow)

        def f(t: Tensor, x: Tensor) -> Tensor:
            s = self.sde.to_noising_time(t)
            return self.sde.ds_dt * self.sde.reverse_drift(s, x, self.score(nets, x, s), pf)

        return f

    def diffusion(self, direction: str = "forward", probability_flow: bool | None = None):
        """``g(s(t)) sqrt(|ds/dt|)`` for the reverse SDE; ``None`` for the ODE."""
        if self._prob_flow(probability_flow):
            return None
        scale = math.sqrt(abs(self.sde.ds_dt))
        return lambda t: self.sde.diffusion(self.sde.to_noising_time(t)) * scale

    def score_fn(self, nets: nn.ModuleDict):
        """``score(t, x)`` in sbrun time (for the Langevin corrector)."""
        return lambda t, x: self.score(nets, x, self.sde.to_noising_time(t))

    def kernel(self, nets: nn.ModuleDict):
        """Reverse kernel ``q(x_r | x_s, x0 = denoise(x_s))`` between sbrun times ``t < t_next``."""

        def k(t: Tensor, t_next: Tensor, x: Tensor) -> Gaussian:
            s, r = self.sde.to_noising_time(t), self.sde.to_noising_time(t_next)
            return self.sde.posterior(r, s, self.denoise(nets, x, s), x)

        return k

    def transport(self, nets: nn.ModuleDict, x: Tensor, solver: Solver, grid: Tensor, *,
                  direction: str = "forward", generator: torch.Generator | None = None,
                  keep: int | None = None) -> SolveResult:
        """Prior -> data (``forward``); ``backward`` is the encoder ``E(x)``: the
        probability-flow ODE from data (t = 1) to the prior (t = 0)."""
        if direction == "backward":
            return solver(self.drift(nets, probability_flow=True), x, grid.flip(0),
                          generator=generator, keep=keep)
        pf = self.sampler == "ode" or (self.sampler == "auto" and not solver.stochastic)
        extras = solver_extras(solver, kernel=self.kernel(nets), score=self.score_fn(nets),
                               noise_last_step=False)
        return solver(self.drift(nets, probability_flow=pf), x, grid,
                      diffusion=self.diffusion(probability_flow=pf), generator=generator,
                      keep=keep, **extras)

    # -- likelihood ------------------------------------------------------------------------
    def log_likelihood(self, nets: nn.ModuleDict, x: Tensor,
                       generator: torch.Generator | None = None, **ode) -> LogLikelihood:
        """``log p(x)`` of data ``x: (B, *D)`` (at noising time ``s_min``) under the model:
        the probability-flow ODE from ``s_min`` to 1 and the prior's log-density.

        ``ode``: the likelihood solver of :func:`sbrun.solvers.likelihood.log_likelihood`:
        ``scheme`` (dopri5 unless given), ``rtol``/``atol`` (``nll_rtol``/``nll_atol`` unless
        given), ``steps`` (for the fixed-step schemes euler, heun, rk4).
        """

        def velocity(s: Tensor, y: Tensor) -> Tensor:
            return self.sde.reverse_drift(s, y, self.score(nets, y, s), probability_flow=True)

        ode = {"rtol": self.nll_rtol, "atol": self.nll_atol, **ode}
        return log_likelihood(velocity, x, (self.sde.s_min, 1.0), self.prior.log_prob,
                              method=self.divergence, generator=generator, **ode)

    def nll_points_for(self, target: Tensor) -> int:
        """``nll_points``; images at most 32 (hundreds of ODE steps with a VJP each)."""
        return self.nll_points if target.dim() <= 2 else min(self.nll_points, 32)

    def metrics(self, nets: nn.ModuleDict, x0: Tensor, result: SolveResult,
                target: Tensor) -> dict[str, float]:
        """``nll`` (nats per sample, exact up to the ODE tolerance), ``nll_nfe``; ``bpd`` for
        images (``nll / (d ln 2) + 7``: pixels ``u8 / 127.5 - 1``, bins of width 2/256)."""
        if not self.likelihood:
            return {}
        x = target[: self.nll_points_for(target)]
        ll = self.log_likelihood(nets, x, torch.Generator().manual_seed(0))
        nll = float(-ll.logp.mean())
        out = {"nll": nll, "nll_nfe": ll.nfe}
        if len(self.problem.shape) == 3:
            out["bpd"] = nll / (x[0].numel() * math.log(2)) + 7.0
        return out


def oracle_eps(sde: NoisingSDE, score_fn):
    """An eps-"network" from a known score ``score_fn(x, s)``: ``eps = -sigma_s score``.

    It takes the scaled input ``c_in x`` like a trained network (tests plug it in).
    """

    class Oracle(nn.Module):
        def forward(self, xin: Tensor, s: Tensor) -> Tensor:
            alpha, sigma = sde.coefficients(s, xin)
            x = xin * (alpha**2 + sigma**2).sqrt()
            return -sigma * score_fn(x, s)

    return Oracle()
