"""LightSB's adjusted Schrödinger potential: a Gaussian mixture (Korotin et al., ICLR 2024).

For the reference ``dX = sigma dW`` (``eps = sigma^2``) the Schrödinger bridge's static plan
is ``pi(x, y) ∝ p0(x) exp(<x, y> / eps) v(y) / c(x)`` for an *adjusted potential* ``v``.
LightSB takes ``v(y) = sum_k alpha_k N(y | r_k, eps S_k)``; then (Korotin et al. 2024, Prop. 3.2)

* ``c(x) = ∫ exp(<x, y> / eps) v(y) dy = sum_k alpha_k exp((2 <x, r_k> + x^T S_k x) / (2 eps))``;
* ``pi(y | x) = sum_k w_k(x) N(y | r_k + S_k x, eps S_k)`` with ``w_k(x) ∝ alpha_k exp((2 <x,
  r_k> + x^T S_k x) / (2 eps))``: a Gaussian mixture, sampled exactly;
* the bridge's drift at ``(t, x)`` is ``(E[X_1 | X_t = x] - x) / (1 - t)``, with ``X_1 | X_t``
  again a Gaussian mixture (derived in :meth:`GaussianMixturePotential.posterior_mean`).

``S_k`` is diagonal (``cov=diag``: ``exp(log_s)``) or full (``cov=full``: ``L L^T`` with ``L``
lower triangular, positive diagonal). Training uses Cholesky-type formulas (one ``L_k^{-1}``
per step, then matrix products); sampling and the drift use the eigenbasis of ``S_k`` (no
gradients).

The weights are stored as ``alpha_logit_k = eps log alpha_k`` (Korotin et al.'s
``log_alpha_raw``): every term of the exponent of ``c(x)``,
``(alpha_logit_k + <x, r_k> + x^T S_k x / 2) / eps``, is then a parameter on one scale, so one
Adam step moves the weights as far as the means whatever ``eps``. With ``log alpha`` itself
as the parameter the weights move ``1 / eps`` times slower than the means in that exponent:
at ``eps = 0.1`` they lag, components stay on the wrong modes and training stalls.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import Tensor, nn

from sbrun.errors import ConfigError

COVS = ("diag", "full")

log = logging.getLogger(__name__)


class GaussianMixturePotential(nn.Module):
    """``v(y) = sum_k alpha_k N(y | r_k, eps S_k)`` on vectors ``(B, D)``.

    Args:
        shape: sample shape ``(D,)`` (vectors only).
        n_components: ``K``.
        cov: ``diag`` | ``full``: the form of ``S_k``.
        eps: ``sde.sigma^2`` of the reference (passed by ``method=lightsb``).
        init_log_s: initial ``log`` of the diagonal of ``S_k`` (``0``: ``S_k = I``, the
            reference kernel's own covariance ``eps I``).
        init_means: ``(K, D)`` initial ``r_k`` (LightSB: target draws); ``None``: zeros.
        init_cov: ``(D, D)`` SPD initial ``S_k`` of every component (``diag``: its
            diagonal), in place of ``init_log_s``; ``None``: ``exp(init_log_s) I``.
        cond_dim: ignored (the potential takes no time); accepted so ``build`` can pass it.
        hidden, depth: network sizes that presets such as ``debug=smoke`` set for every
            model; a mixture has none, so they are ignored with a warning.
    """

    def __init__(self, shape: tuple[int, ...], n_components: int = 50, cov: str = "diag",
                 eps: float = 1.0, init_log_s: float = 0.0, init_means: Tensor | None = None,
                 init_cov: Tensor | None = None, cond_dim: int = 1, hidden: int | None = None,
                 depth: int | None = None):
        super().__init__()
        if hidden is not None or depth is not None:
            log.warning("model=gmm_potential has no hidden layers: model.hidden/depth ignored")
        if len(tuple(shape)) != 1:
            raise ConfigError(f"model=gmm_potential (LightSB) works on vectors, not shape {tuple(shape)}")
        if cov not in COVS:
            raise ConfigError(f"unknown method.cov '{cov}'; valid: {', '.join(COVS)}")
        if n_components < 1:
            raise ConfigError(f"method.n_components must be >= 1, got {n_components}")
        if not eps > 0:
            raise ConfigError(f"LightSB needs eps = sde.sigma^2 > 0, got {eps}")
        k, d = int(n_components), int(shape[0])
        self.cov, self.eps, self.dim = cov, float(eps), d
        self.alpha_logit = nn.Parameter(torch.full((k,), -self.eps * math.log(k)))
        self.r = nn.Parameter(torch.zeros(k, d))
        if init_means is not None:
            with torch.no_grad():
                self.r.copy_(torch.as_tensor(init_means, dtype=torch.float32).reshape(k, d))
        L = torch.eye(d, dtype=torch.float64) * math.exp(0.5 * float(init_log_s))
        if init_cov is not None:
            L = torch.linalg.cholesky(torch.as_tensor(init_cov, dtype=torch.float64).reshape(d, d))
        if cov == "diag":
            log_s = L.pow(2).sum(1).log()  # the diagonal of S = L L^T
            self.log_s = nn.Parameter(log_s.float().expand(k, d).clone())
        else:  # L = tril(L_raw) with exp on the diagonal: S = L L^T positive definite
            raw = torch.tril(L, -1) + torch.diag_embed(L.diagonal().log())
            self.L_raw = nn.Parameter(raw.float().expand(k, d, d).clone())

    @property
    def n_components(self) -> int:
        return self.r.shape[0]

    @property
    def log_alpha(self) -> Tensor:
        """``log alpha_k = alpha_logit_k / eps``: ``(K,)``."""
        return self.alpha_logit / self.eps

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Checkpoints written before ``alpha_logit`` stored ``log_alpha`` itself."""
        old = state_dict.pop(prefix + "log_alpha", None)
        if old is not None and prefix + "alpha_logit" not in state_dict:
            state_dict[prefix + "alpha_logit"] = old * self.eps
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- factors of S_k ------------------------------------------------------------
    def chol(self) -> Tensor:
        """``L_k: (K, D, D)`` with ``S_k = L_k L_k^T`` (``diag``: ``diag(exp(log_s / 2))``)."""
        if self.cov == "diag":
            return torch.diag_embed((0.5 * self.log_s).exp())
        low = torch.tril(self.L_raw, -1)
        return low + torch.diag_embed(self.L_raw.diagonal(dim1=-2, dim2=-1).exp())

    def eig(self) -> tuple[Tensor | None, Tensor]:
        """``S_k = U_k diag(lam_k) U_k^T``: ``(U (K, D, D) or None for diag, lam (K, D))``."""
        if self.cov == "diag":
            return None, self.log_s.exp()
        L = self.chol()
        lam, U = torch.linalg.eigh(L @ L.transpose(-1, -2))
        return U, lam.clamp_min(1e-12)

    @staticmethod
    def _rot(x: Tensor, U: Tensor | None, k: int) -> Tensor:
        """``U_k^T x``: ``(B, D)`` -> ``(B, K, D)`` (``x`` broadcast when ``U`` is ``None``)."""
        if U is None:
            return x[:, None, :].expand(x.shape[0], k, x.shape[1])
        return torch.einsum("bd,kde->bke", x, U.to(x))

    @staticmethod
    def _unrot(z: Tensor, U: Tensor | None) -> Tensor:
        """``U_k z_k``: ``(B, K, D)`` -> ``(B, K, D)``."""
        return z if U is None else torch.einsum("kde,bke->bkd", U.to(z), z)

    # -- the training objective ------------------------------------------------------
    def log_c(self, x: Tensor) -> Tensor:
        """``log c(x)``: ``(B, D)`` -> ``(B,)`` (closed form, see the module docstring)."""
        return torch.logsumexp(self._c_logits(x), dim=1)

    def _c_logits(self, x: Tensor) -> Tensor:
        """``log alpha_k + (2 <x, r_k> + x^T S_k x) / (2 eps)``: ``(B, K)``."""
        if self.cov == "diag":
            quad = x.pow(2) @ self.log_s.exp().T
        else:
            quad = torch.einsum("bd,kde->bke", x, self.chol()).pow(2).sum(-1)  # |L_k^T x|^2
        return self.log_alpha + (2 * x @ self.r.T + quad) / (2 * self.eps)

    def log_v(self, y: Tensor) -> Tensor:
        """``log v(y) = logsumexp_k [log alpha_k + log N(y | r_k, eps S_k)]``: ``(B,)``."""
        d = self.dim
        if self.cov == "diag":
            inv = (-self.log_s).exp()  # (K, D)
            maha = y.pow(2) @ inv.T - 2 * y @ (self.r * inv).T + (self.r.pow(2) * inv).sum(1)
            logdet = self.log_s.sum(1)
        else:
            L = self.chol()
            eye = torch.eye(d, dtype=L.dtype, device=L.device).expand_as(L)
            L_inv = torch.linalg.solve_triangular(L, eye, upper=False)  # K D^3, not B K D^2
            z = torch.einsum("bd,ked->bke", y, L_inv) - torch.einsum("kd,ked->ke", self.r, L_inv)
            maha = z.pow(2).sum(-1)  # (B, K): |L_k^{-1} (y - r_k)|^2
            logdet = 2 * self.L_raw.diagonal(dim1=-2, dim2=-1).sum(1)
        log_n = -0.5 * (maha / self.eps + logdet + d * math.log(2 * math.pi * self.eps))
        return torch.logsumexp(self.log_alpha + log_n, dim=1)

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        """LightSB's per-sample loss ``-log v(x1) + log c(x0)``: ``(B,)`` (its mean is the KL
        between the true and the model's plan up to a constant, Korotin et al. 2024, Eq. 12)."""
        return self.log_c(x0) - self.log_v(x1)

    # -- the conditional law of X_1 given X_t = x ------------------------------------
    @torch.no_grad()
    def posterior(self, x: Tensor, t: float = 0.0) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Law of ``X_1 | X_t = x`` under the bridge: a Gaussian mixture.

        With ``a = t / (1 - t)`` and ``S_k = U diag(lam) U^T`` (coordinates ``~`` in that
        basis), component ``k`` has mean ``m_k = U (lam ~x / (1 - t) + ~r) / (a lam + 1)``,
        covariance ``eps U diag(lam / (a lam + 1)) U^T`` and log-weight
        ``log alpha_k - 1/2 sum log(1 + a lam) + sum [lam ~x^2 / (1 - t)^2 + 2 ~x ~r / (1 - t)
        - a ~r^2] / (2 eps (a lam + 1))`` (``t = 0``: ``pi(y | x)`` of the module docstring).

        Returns ``(log_w (B, K) normalised, mean (B, K, D), var (B, K, D) in the eigenbasis,
        U or None)``; memory ``B K D``: :meth:`sample` and :meth:`drift` avoid it.
        """
        U, lam = self.eig()
        k, lam = self.n_components, lam.to(x)[None]
        xr, r = self._rot(x, U, k), self.r.to(x)
        rr = (r if U is None else torch.einsum("kd,kde->ke", r, U.to(x)))[None]  # U_k^T r_k
        a, s = t / (1 - t), 1 / (1 - t)
        denom = a * lam + 1
        logit = self.log_alpha.to(x)[None] - 0.5 * denom.log().sum(-1) + (
            (lam * xr.pow(2) * s * s + 2 * xr * rr * s - a * rr.pow(2)) / denom).sum(-1) / (2 * self.eps)
        m_rot = (lam * xr * s + rr) / denom
        var = (self.eps * lam / denom).expand(m_rot.shape)
        return torch.log_softmax(logit, dim=1), self._unrot(m_rot, U), var, U

    def _diag_terms(self, x: Tensor, t: float) -> tuple[Tensor, Tensor, Tensor]:
        """``cov=diag`` without ``(B, K, D)`` tensors: log-weights ``(B, K)`` and the
        coefficients ``c = lam / (a lam + 1)``, ``q = r / (a lam + 1)`` (``(K, D)``) of
        ``m_k = c_k x / (1 - t) + q_k``."""
        lam, r = self.log_s.exp().to(x), self.r.to(x)
        a, s = t / (1 - t), 1 / (1 - t)
        denom = a * lam + 1
        c, q = lam / denom, r / denom
        logit = (self.log_alpha.to(x)[None] - 0.5 * denom.log().sum(-1)[None]
                 + (s * s * x.pow(2) @ c.T + 2 * s * x @ q.T
                    - a * (r * q).sum(-1)[None]) / (2 * self.eps))
        return torch.log_softmax(logit, dim=1), c, q

    @torch.no_grad()
    def sample(self, x: Tensor, t: float = 0.0,
               generator: torch.Generator | None = None, chunk: int = 4096) -> Tensor:
        """Exact draws of ``X_1 | X_t = x`` (``t = 0``: ``pi(. | x)``): ``(B, D)`` -> ``(B, D)``."""
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        return torch.cat([self._sample_rows(x[lo: lo + chunk], z[lo: lo + chunk], t, generator)
                          for lo in range(0, x.shape[0], chunk)])

    def _sample_rows(self, x: Tensor, z: Tensor, t: float,
                     generator: torch.Generator | None) -> Tensor:
        """One chunk of :meth:`sample` with standard normals ``z``. Runs of equal rows (``k``
        draws per point, as the evaluation asks) share their weights and means."""
        xu, inv = torch.unique_consecutive(x, dim=0, return_inverse=True)
        if self.cov == "diag":
            log_w, c, q = self._diag_terms(xu, t)
            idx = self._pick(log_w[inv], generator)
            return c[idx] * x / (1 - t) + q[idx] + (self.eps * c[idx]).sqrt() * z
        log_w, mean, var, U = self.posterior(xu, t)
        idx = self._pick(log_w[inv], generator)
        y, noise = mean[inv, idx], var[0, idx].sqrt() * z  # noise in the eigenbasis of S_k
        for k in idx.unique().tolist():  # one matrix product per component
            rows = idx == k
            y[rows] += noise[rows] @ U[k].to(x).T
        return y

    @staticmethod
    def _pick(log_w: Tensor, generator: torch.Generator | None) -> Tensor:
        """One component per row from the weights ``(B, K)``."""
        idx = torch.multinomial(log_w.exp().float().cpu(), 1, generator=generator)[:, 0]
        return idx.to(log_w.device)

    @torch.no_grad()
    def posterior_mean(self, x: Tensor, t: float, chunk: int = 4096) -> Tensor:
        """``E[X_1 | X_t = x]``: ``(B, D)``."""
        out = []
        for lo in range(0, x.shape[0], chunk):
            xb = x[lo: lo + chunk]
            if self.cov == "diag":
                log_w, c, q = self._diag_terms(xb, t)
                w = log_w.exp()
                out.append(w @ c * xb / (1 - t) + w @ q)
            else:
                log_w, mean, _, _ = self.posterior(xb, t)
                out.append((log_w.exp()[..., None] * mean).sum(1))
        return torch.cat(out)

    @torch.no_grad()
    def drift(self, t: Tensor, x: Tensor) -> Tensor:
        """The bridge's drift ``(E[X_1 | X_t = x] - x) / (1 - t)``; ``t: (B,)`` (one value,
        as the solvers pass it, or a scalar), ``x: (B, D)``."""
        tt = torch.as_tensor(t).reshape(-1)
        if bool((tt != tt[0]).any()):
            raise ValueError("GaussianMixturePotential.drift takes one time per call")
        t0 = min(float(tt[0]), 1 - 1e-6)
        return (self.posterior_mean(x, t0) - x) / (1 - t0)
