"""DDPM: the discrete forward chain and its learned Gaussian reverse (Ho et al. 2020; seed 000).

Forward chain ``q(x_i | x_{i-1}) = N(sqrt(alpha_i) x_{i-1}, (1 - alpha_i) I)``, ``i = 1..T``
(``T = method.chain_steps``), the discretisation of the VP SDE (``sde=vp``;
:meth:`sbrun.sde.VP.discretize`), so that
``q(x_i | x_0) = N(sqrt(abar_i) x_0, (1 - abar_i) I)``. The reverse kernel is
``p_theta(x_{i-1} | x_i) = N(mu_theta(x_i, i), sigma_i^2 I)`` with the posterior variance
``sigma_i^2 = beta~_i`` (``beta_1`` at ``i = 1``, where ``beta~_1 = 0``). Three views of the
same network (the slides' "formulación basada en score"):

    mu_theta = (x_i - beta_i / sqrt(1 - abar_i) eps_theta) / sqrt(alpha_i)        (noise)
             = (x_i + beta_i s_theta) / sqrt(alpha_i),   s_theta = -eps_theta / sqrt(1 - abar_i)

(the slides print ``- (1 - alpha_t)/sqrt(alpha_t) grad log q``; the sign is ``+``, Luo 2022,
eq. 133). Losses (``method.loss``): ``eps`` the simplified ELBO ``|eps - eps_theta|^2`` (Ho's
eq. 14); ``elbo`` the same with the ELBO's weight ``beta_i^2 / (2 sigma_i^2 alpha_i (1 - abar_i))``;
``mu`` a network that outputs ``mu_theta`` itself, trained on the slides' ELBO
``|mu_q - mu_theta|^2 / (2 sigma_i^2)``. Sampling: ``solver=ancestral`` (Alg. 2; a coarser
``solver.steps`` grid respaces the chain, Nichol & Dhariwal 2021), or any solver of the
VP SDE the chain discretises (inherited from :class:`ScoreSDE`). Chain index ``i`` sits
at noising time ``s = i / T``; the network sees ``s``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sbrun.config import refuse_removed
from sbrun.data.distributions import Problem
from sbrun.data.gaussians import Gaussian
from sbrun.errors import ConfigError
from sbrun.methods.base import Batch, LossOutput, Phase
from sbrun.methods.score_sde import ScoreSDE, stratified
from sbrun.sde.base import ReferenceSDE, expand_t
from sbrun.sde.vp import VP

LOSSES = ("eps", "mu", "elbo")


def mean_from_eps(x: Tensor, eps: Tensor, alpha: Tensor, abar: Tensor) -> Tensor:
    """``mu = (x - (1 - alpha) / sqrt(1 - abar) eps) / sqrt(alpha)`` (Ho et al., eq. 11)."""
    return (x - (1 - alpha) / (1 - abar).sqrt() * eps) / alpha.sqrt()


def mean_from_score(x: Tensor, score: Tensor, alpha: Tensor) -> Tensor:
    """``mu = (x + (1 - alpha) score) / sqrt(alpha)`` (the slides' score form, with ``+``)."""
    return (x + (1 - alpha) * score) / alpha.sqrt()


class DDPM(ScoreSDE):
    """Denoising diffusion probabilistic model on a chain of ``chain_steps`` steps of ``sde=vp``.

    Args:
        chain_steps: number of steps of the chain (Ho et al.'s ``T``: 1000).
        loss: ``eps`` | ``elbo`` | ``mu`` (see the module docstring).
        likelihood: report ``nll`` (exact, through the probability-flow ODE of the VP SDE
            the chain discretises; Song et al. 2021, Table 2) and ``nll_elbo`` (the
            chain's variational bound, ``-ELBO >= -log p``). With ``loss=mu`` only
            ``nll_elbo`` is meaningful: the score recovered from ``mu_theta`` divides its
            error by ``beta_i`` and the probability flow diverges.
        clip_x0: ancestral sampling through the predicted ``x0 = (x - sqrt(1 - abar) eps) /
            sqrt(abar)`` clipped to the data range ``[-1, 1]`` (Ho et al.'s sampler), then
            the posterior mean ``q(x_j | x_i, x0)``; without the clip this equals eq. 11.
            ``auto``: on images. Keeps respaced chains (few, long jumps) from amplifying an
            imperfect ``eps`` by ``1 / sqrt(alpha)`` per jump.
        sampler, nll_points, divergence, nll_rtol, nll_atol, noise_draws: as
            :class:`ScoreSDE`.
    """

    name = "ddpm"
    family = "chain"

    def __init__(self, chain_steps: int = 1000, loss: str = "eps", likelihood: bool = True,
                 sampler: str = "auto", nll_points: int = 500, divergence: str = "auto",
                 nll_rtol: float = 1e-5, nll_atol: float = 1e-5, noise_draws: int = 1,
                 clip_x0: bool | str = "auto", T: int | None = None):
        refuse_removed(T=T)  # renamed: method.chain_steps
        super().__init__("uniform", sampler, likelihood, nll_points, divergence, nll_rtol,
                         nll_atol, noise_draws)
        if loss not in LOSSES:
            raise ConfigError(f"unknown method.loss '{loss}'; valid: {', '.join(LOSSES)}")
        if clip_x0 not in (True, False, "auto"):
            raise ConfigError(f"method.clip_x0 must be true, false or auto, got {clip_x0}")
        self.chain_steps, self.loss_type, self.clip_x0 = int(chain_steps), loss, clip_x0

    def bind(self, problem: Problem, sde: ReferenceSDE) -> None:
        if not isinstance(sde, VP):
            raise ConfigError(f"method=ddpm discretises the VP SDE, got sde={sde.name}: use sde=vp "
                              "(sde.schedule=linear|cosine), or method=score-sde for other SDEs")
        super().bind(problem, sde)
        self.chain = sde.discretize(self.chain_steps)
        c = self.chain
        abar = c.alphas_bar
        var = (1 - abar[:-1]) / (1 - abar[1:]) * c.betas  # posterior variance beta~_i
        var[0] = c.betas[0]  # i = 1: beta~_1 = 0, Ho's decoder variance beta_1
        self.kernel_var = torch.cat([var.new_zeros(1), var])  # (chain_steps+1,), index i
        w = c.betas**2 / (2 * var * c.alphas * (1 - abar[1:]))
        self.elbo_weight = torch.cat([w.new_zeros(1), w])
        self.clip = self.clip_x0 is True or (self.clip_x0 == "auto" and len(problem.shape) == 3)

    # -- the network at chain index i (or noising time s = i / T) -----------------------
    def _index(self, s: Tensor) -> Tensor:
        n = self.chain_steps
        return (torch.as_tensor(s, dtype=torch.float64) * n).round().long().clamp(1, n)

    def _col(self, v: Tensor, i: Tensor, x: Tensor) -> Tensor:
        return expand_t(v.to(x.device)[i.to(x.device)], x).to(x.dtype)

    def eps(self, nets: nn.ModuleDict, x: Tensor, s: Tensor) -> Tensor:
        out = nets["net"](x, torch.as_tensor(s).to(x))
        if self.loss_type != "mu":
            return out
        # the network gives mu_theta for the step i -> i-1: invert mean_from_eps there
        i, c = self._index(s).expand(x.shape[0]), self.chain
        alpha, abar = self._col(c.alphas, i - 1, x), self._col(c.alphas_bar, i, x)
        return (x - alpha.sqrt() * out) * (1 - abar).sqrt() / (1 - alpha)

    # -- training --------------------------------------------------------------------------
    def loss(self, nets: nn.ModuleDict, batch: Batch, phase: Phase) -> LossOutput:
        x0 = batch.x1.repeat_interleave(self.noise_draws, 0)
        z = batch.randn_like(x0)
        n = self.chain_steps
        i = (stratified(batch, x0.shape[0]) * n).long().clamp(max=n - 1) + 1  # U{1..T}
        xi = self.chain.marginal(i, x0).mean + self.chain.coefficients(i, x0)[1] * z
        out = nets["net"](xi, i.to(x0.dtype) / n)
        if self.loss_type == "mu":
            target = self.chain.posterior(i - 1, i, x0, xi).mean  # mu_q(x0, x_i, i)
            w = 1 / (2 * self._col(self.kernel_var, i, x0).flatten())
            err = w * (out - target).pow(2).reshape(x0.shape[0], -1).sum(1)
        else:
            err = (out - z).pow(2).reshape(x0.shape[0], -1).sum(1)
            if self.loss_type == "elbo":
                err = err * self._col(self.elbo_weight, i, x0).flatten()
        loss = err.mean()
        return LossOutput(loss, {"loss": loss.detach()})

    # -- ancestral sampling ---------------------------------------------------------------
    def kernel(self, nets: nn.ModuleDict, via: str = "mu"):
        """``p_theta(x_j | x_i)`` between the chain indices of sbrun times ``t < t_next``.

        ``via="mu"``: the slides' mean ``mu_theta`` from the noise; ``"score"``: the same mean
        from ``s_theta``. For ``j < i - 1`` (respacing) ``alpha = abar_i / abar_j``.
        """
        if via not in ("mu", "score"):
            raise ValueError(f"via must be 'mu' or 'score', got {via}")
        abar = self.chain.alphas_bar

        def k(t: Tensor, t_next: Tensor, x: Tensor) -> Gaussian:
            i, j = self.chain.index(t[0]), self.chain.index(t_next[0])
            if i == j:  # a grid finer than the chain: nothing to do
                return Gaussian(x, std=torch.zeros((), dtype=x.dtype))
            eps = self.eps(nets, x, torch.full((x.shape[0],), i / self.chain_steps, device=x.device))
            ai, aj = abar[i].item(), abar[j].item()
            alpha = torch.tensor(ai / aj, dtype=x.dtype)
            if via == "mu" and self.clip:
                x0 = ((x - math.sqrt(1 - ai) * eps) / math.sqrt(ai)).clamp(-1, 1)
                mean = (math.sqrt(aj) * (1 - ai / aj) * x0
                        + math.sqrt(ai / aj) * (1 - aj) * x) / (1 - ai)
            elif via == "mu":
                mean = mean_from_eps(x, eps, alpha, torch.tensor(ai, dtype=x.dtype))
            else:
                mean = mean_from_score(x, -eps / math.sqrt(1 - ai), alpha)
            if j == i - 1:
                var = self.kernel_var[i].item()
            else:
                var = (1 - aj) / (1 - ai) * (1 - ai / aj)  # posterior variance of the jump
            return Gaussian(mean, std=torch.tensor(var, dtype=x.dtype).sqrt())

        return k

    # -- the variational bound ------------------------------------------------------------
    @torch.no_grad()
    def nll_elbo(self, nets: nn.ModuleDict, x0: Tensor,
                 generator: torch.Generator | None = None) -> Tensor:
        """``-ELBO(x0) = L_T + sum_{i>=2} L_{i-1} + L_0`` per sample (nats) -> ``(B,)``.

        ``L_T = KL(q(x_T | x0) || N(0, I))``; ``L_{i-1} = |mu_q - mu_theta|^2 / (2 beta~_i)``;
        ``L_0 = -log N(x0; mu_theta(x_1, 1), beta_1 I)``; one draw of ``x_i`` per term.
        """
        c, b, d = self.chain, x0.shape[0], x0[0].numel()
        flat = x0.reshape(b, -1)
        a_t, v_t = c.alphas_bar[-1].item(), 1 - c.alphas_bar[-1].item()
        total = 0.5 * (d * v_t + a_t * flat.pow(2).sum(1) - d - d * math.log(v_t))
        for i in range(1, self.chain_steps + 1):
            idx = torch.full((b,), i, dtype=torch.long)
            z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
            xi = c.marginal(idx, x0).mean + c.coefficients(idx, x0)[1] * z
            t = torch.full((b,), 1 - i / self.chain_steps, dtype=torch.float64, device=x0.device)
            mu = self.kernel(nets)(t, t + 1 / self.chain_steps, xi).mean
            mu_q = c.posterior(i - 1, i, x0, xi).mean
            var = self.kernel_var[i].item()
            total = total + (mu_q - mu).pow(2).reshape(b, -1).sum(1) / (2 * var)
            if i == 1:
                total = total + 0.5 * d * math.log(2 * math.pi * var)
        return total

    def metrics(self, nets, x0, result, target) -> dict[str, float]:
        """:meth:`ScoreSDE.metrics` plus ``nll_elbo`` (the chain's bound, nats per sample)."""
        out = super().metrics(nets, x0, result, target)
        if self.likelihood:
            x = target[: self.nll_points_for(target)]
            out["nll_elbo"] = float(self.nll_elbo(nets, x, torch.Generator().manual_seed(0)).mean())
        return out
