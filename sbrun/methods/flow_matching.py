"""Flow matching / conditional flow matching (Lipman et al. 2023; Tong et al. 2024).

Regress ``v(x_t, t)`` on the conditional velocity of a path between coupled pairs
``(x0, x1)``: with the straight path ``x_t = (1 - t) x0 + t x1 + sigma_t z`` and
``sigma_t = sigma sqrt(t (1 - t))`` (a Brownian bridge of the reference
``dX = sigma dW`` when ``sigma > 0``: SB-CFM), the target is
``u_t = x1 - x0 + (1 - 2t) / (2 t (1 - t)) (x_t - mu_t)``.
Samples follow the ODE ``dx = v(x, t) dt`` from the source at ``t = 0``.
"""

from __future__ import annotations

import torch
from torch import nn

from sbrun.errors import ConfigError
from sbrun.methods.base import Batch, LossOutput, Method, Phase
from sbrun.sde.base import expand_t

COUPLINGS = ("independent", "exact_ot", "entropic_ot")


class FlowMatching(Method):
    """Conditional flow matching with a minibatch coupling.

    Args:
        sigma: width of the Gaussian path (a *sigma*: the Brownian-bridge std is
            ``sigma sqrt(t(1-t))``); 0 gives the straight deterministic path.
        coupling: ``independent`` | ``exact_ot`` | ``entropic_ot`` (minibatch plan).
        coupling_sigma: sigma of the entropic coupling (eps = sigma^2); defaults to
            ``sigma`` (SB-CFM: plan and bridge share the reference).
    """

    name = "flow-matching"

    def __init__(self, sigma: float = 0.0, coupling: str = "independent",
                 coupling_sigma: float | None = None):
        if sigma < 0:
            raise ConfigError(f"method.sigma must be >= 0, got {sigma}")
        if coupling not in COUPLINGS:
            raise ConfigError(f"unknown method.coupling '{coupling}'; valid: {', '.join(COUPLINGS)}")
        self.sigma = float(sigma)
        self.coupling = coupling
        self.coupling_sigma = coupling_sigma if coupling_sigma is not None else sigma
        if coupling == "entropic_ot" and not self.coupling_sigma > 0:
            raise ConfigError("method.coupling=entropic_ot needs method.sigma (or coupling_sigma) > 0")

    def pair(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Re-pair the minibatch by the chosen coupling."""
        if self.coupling == "independent":
            return batch.x0, batch.x1
        from sbrun.couplings import minibatch_pair

        method = "exact" if self.coupling == "exact_ot" else "sinkhorn_log"
        return minibatch_pair(batch.x0, batch.x1, method=method, sigma=self.coupling_sigma,
                              generator=batch.generator)

    def loss(self, nets: nn.ModuleDict, batch: Batch, phase: Phase) -> LossOutput:
        x0, x1 = self.pair(batch)
        t = batch.rand(x0.shape[0])
        tt = expand_t(t, x0)
        mu = (1 - tt) * x0 + tt * x1
        u = x1 - x0
        if self.sigma > 0:
            std = self.sigma * (tt * (1 - tt)).sqrt()
            z = batch.randn_like(x0)
            xt = mu + std * z
            # d/dt of sigma_t times z: (1 - 2t) / (2 sqrt(t(1-t))) sigma z
            u = u + self.sigma * (1 - 2 * tt) / (2 * (tt * (1 - tt)).sqrt().clamp_min(1e-4)) * z
        else:
            xt = mu
        v = nets["net"](xt, t)
        loss = (v - u).pow(2).reshape(v.shape[0], -1).sum(1).mean()
        return LossOutput(loss, {"loss": loss.item()})

    def drift(self, nets: nn.ModuleDict, direction: str = "forward"):
        net = nets["net"]
        return lambda t, x: net(x, t)

    def metrics(self, nets, x0, result, target) -> dict[str, float]:
        """Path energy ``E int_0^1 |v|^2 dt`` along the sampled ODE paths (Tong et al.)."""
        if result.path is None or result.path.shape[1] < 2:
            return {}
        path, t = result.path, result.t.to(result.path.device)
        dx = torch.diff(path, dim=1).reshape(path.shape[0], path.shape[1] - 1, -1)
        dt = torch.diff(t).reshape(1, -1)
        energy = (dx.pow(2).sum(-1) / dt).sum(1).mean()
        return {"path_energy": float(energy)}
