"""The simplex side of multimarginal interpolants (Albergo, Boffi, Lindsey, Vanden-Eijnden
2023, arXiv:2310.03695; seed 004): draws of ``alpha``, paths ``alpha(t)``, and the
"geometric algorithm" that picks a path of low transport cost.

Conventions: ``alpha: (B, K)`` on the simplex ``{alpha_k >= 0, sum_k alpha_k = 1}``;
stacked per-marginal tensors are ``(B, K, *D)``; a path maps ``t: (B,)`` to
``(alpha, d_alpha)``, both ``(B, K)``, with ``alpha(0) = e_i`` and ``alpha(1) = e_j``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from sbrun.errors import ConfigError

G = Callable[[Tensor, Tensor], Tensor]  # g(alpha: (B, K), x: (B, *D)) -> (B, K, *D)


def barycentric(alpha: Tensor, xs: Tensor) -> Tensor:
    """``sum_k alpha_k xs_k``: ``alpha: (B, K)``, ``xs: (B, K, *D)`` -> ``(B, *D)``.

    The barycentric interpolant ``x(alpha)`` (slide 37) when ``xs`` are draws of the
    marginals, the velocity ``b = sum_k alpha_k'(t) g_k`` when ``alpha`` is ``d_alpha``.
    """
    a = alpha.to(xs.dtype).reshape(*alpha.shape, *([1] * (xs.dim() - 2)))
    return (a * xs).sum(1)


# -- draws of alpha -----------------------------------------------------------------------
def gamma(shape: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``Gamma(shape, 1)`` draws (float64, same shape as ``shape``) from ``generator`` only.

    Marsaglia & Tsang (2000): for ``a >= 1``, ``d = a - 1/3``, ``v = (1 + z / sqrt(9d))^3``,
    accept ``d v`` when ``log u < z^2/2 + d - d v + d log v``; ``a < 1`` uses
    ``Gamma(a) = Gamma(a + 1) U^{1/a}``.
    """
    a = shape.double()
    boost = a < 1
    d = torch.where(boost, a + 1, a) - 1.0 / 3.0
    c = 1.0 / (9.0 * d).sqrt()
    out = torch.empty_like(a)
    todo = torch.ones_like(a, dtype=torch.bool)
    while todo.any():
        z = torch.randn(a.shape, generator=generator, dtype=torch.float64)
        u = torch.rand(a.shape, generator=generator, dtype=torch.float64)
        v = (1 + c * z).clamp_min(1e-12) ** 3
        ok = (1 + c * z > 0) & (u.log() < 0.5 * z**2 + d - d * v + d * v.log()) & todo
        out = torch.where(ok, d * v, out)
        todo = todo & ~ok
    u = torch.rand(a.shape, generator=generator, dtype=torch.float64)
    return torch.where(boost, out * u.pow(1.0 / a), out)


def dirichlet(n: int, k: int, concentration: float,
              generator: torch.Generator | None = None) -> Tensor:
    """``(n, k)`` draws of ``Dir(concentration * 1_k)`` (normalised Gamma draws), float64."""
    w = gamma(torch.full((n, k), float(concentration), dtype=torch.float64), generator)
    w = w.clamp_min(1e-300)
    return w / w.sum(1, keepdim=True)


def sample_alpha(n: int, k: int, concentration: float = 1.0, edge_prob: float = 0.0,
                 generator: torch.Generator | None = None) -> Tensor:
    """Training points on the simplex, ``(n, k)`` float64.

    A fraction ``edge_prob`` lies uniformly on a uniformly chosen edge ``[e_i, e_j]`` (the
    straight transport paths live there, a set the Dirichlet never hits for ``k > 2``);
    the rest is ``Dir(concentration)`` (1: uniform; < 1: mass near faces and vertices).
    """
    alpha = dirichlet(n, k, concentration, generator)
    if edge_prob <= 0 or k < 2:
        return alpha
    on_edge = torch.rand(n, generator=generator, dtype=torch.float64) < edge_prob
    i = torch.randint(0, k, (n,), generator=generator)
    j = (i + torch.randint(1, k, (n,), generator=generator)) % k  # j != i
    s = torch.rand(n, generator=generator, dtype=torch.float64)
    edge = torch.zeros(n, k, dtype=torch.float64)
    edge[torch.arange(n), i] = 1 - s
    edge[torch.arange(n), j] += s
    return torch.where(on_edge[:, None], edge, alpha)


def vertex(k: int, i: int) -> Tensor:
    """The vertex ``e_i`` of the ``k``-simplex, ``(k,)`` float64."""
    e = torch.zeros(k, dtype=torch.float64)
    e[i] = 1.0
    return e


# -- paths ----------------------------------------------------------------------------
class LinePath(nn.Module):
    """The straight segment ``alpha(t) = (1 - t) a + t b`` between simplex points ``a, b: (K,)``."""

    def __init__(self, a: Tensor, b: Tensor):
        super().__init__()
        self.register_buffer("a", torch.as_tensor(a, dtype=torch.float64), persistent=False)
        self.register_buffer("b", torch.as_tensor(b, dtype=torch.float64), persistent=False)

    def forward(self, t: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self.a.to(t.device, t.dtype), self.b.to(t.device, t.dtype)
        t = t.reshape(-1, 1)
        return (1 - t) * a + t * b, (b - a).expand(t.shape[0], -1)


def edge_path(k: int, i: int, j: int) -> LinePath:
    """The edge ``e_i -> e_j``: on it ``x(alpha)`` is the two-marginal linear interpolant."""
    return LinePath(vertex(k, i), vertex(k, j))


class WeightPath(nn.Module):
    """A learnable path from ``e_i`` to ``e_j`` through the simplex (exact end points).

    Geometry: ``w_k(s) = (1 - s) [k = i] + s [k = j] + s (1 - s) exp(theta_k(s))`` with
    ``theta_k(s) = c_k0 + sum_{m=1}^{M} c_km sin(m pi s)``, and ``A(s) = w / sum_k w_k``:
    positive weights keep ``A`` on the simplex, the factor ``s (1 - s)`` pins the ends,
    and ``c_k0 = init`` (very negative) starts close to the straight edge.
    Speed: ``alpha(t) = A(tau(t))`` with the monotone warp
    ``tau(t) = t + sum_m (0.95 / M) tanh(u_m) sin(m pi t) / (m pi)``
    (``tau(0) = 0``, ``tau(1) = 1``, ``tau' >= 0.05``); ``u = 0`` is uniform speed.
    """

    def __init__(self, k: int, i: int, j: int, modes: int = 3, init: float = -4.0):
        super().__init__()
        if modes < 1:
            raise ConfigError(f"a learnable path needs modes >= 1, got {modes}")
        self.k, self.i, self.j = k, i, j
        self.coef = nn.Parameter(torch.zeros(k, modes + 1))
        self.warp = nn.Parameter(torch.zeros(modes))
        with torch.no_grad():
            self.coef[:, 0] = init
        self.register_buffer("m", torch.arange(1, modes + 1, dtype=torch.float64) * math.pi,
                             persistent=False)

    def tau(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """The time warp ``tau(t)`` and ``tau'(t)`` for ``t: (B, 1)``."""
        m = self.m.to(t.device, t.dtype)
        a = 0.95 / m.shape[0] * torch.tanh(self.warp.to(t.dtype))
        tau = t + torch.sin(t * m) @ (a / m)[:, None]
        return tau.clamp(0, 1), 1 + torch.cos(t * m) @ a[:, None]  # clamp: sin(m pi) ~ 1e-16

    def forward(self, t: Tensor) -> tuple[Tensor, Tensor]:
        s, ds = self.tau(t.reshape(-1, 1))
        c, m = self.coef.to(s.dtype), self.m.to(s.device, s.dtype)
        theta = c[:, 0] + torch.sin(s * m) @ c[:, 1:].T  # (B, K)
        d_theta = (torch.cos(s * m) * m) @ c[:, 1:].T
        e = theta.exp()
        q, dq = s * (1 - s), 1 - 2 * s
        ends = torch.zeros_like(theta)
        ends[:, self.i] += 1 - s[:, 0]
        ends[:, self.j] += s[:, 0]
        d_ends = torch.zeros_like(theta)
        d_ends[:, self.i] -= 1
        d_ends[:, self.j] += 1
        w = ends + q * e
        dw = d_ends + e * (dq + q * d_theta)
        total, d_total = w.sum(1, keepdim=True), dw.sum(1, keepdim=True)
        alpha = w / total
        return alpha, (dw - alpha * d_total) / total * ds


# -- transport cost and its minimisation (seed 004, "a geometric algorithm") -----------------
def cost_profile(g: G, path: nn.Module, xs: Tensor, times: Tensor) -> Tensor:
    """``E|b(t, x(alpha(t)))|^2`` at each time, ``b = sum_k alpha_k'(t) g_k(alpha(t), x)``.

    Args:
        g: the conditional expectations ``g(alpha, x) -> (B, K, *D)``.
        xs: ``(n, K, *D)`` independent draws of the marginals (reused at every time:
            common random numbers make two paths comparable).
        times: ``(n_t,)``.

    Returns:
        ``(n_t,)`` Monte-Carlo estimates of ``E|b|^2``.
    """
    n, n_t = xs.shape[0], times.shape[0]
    t = times.to(xs.dtype).repeat_interleave(n)
    alpha, d_alpha = path(t)
    xr = xs.repeat(n_t, *([1] * (xs.dim() - 1)))
    b = barycentric(d_alpha, g(alpha, barycentric(alpha, xr)))
    return b.pow(2).reshape(n_t, n, -1).sum(-1).mean(1)


def path_cost(g: G, path: nn.Module, xs: Tensor, n_times: int = 32) -> float:
    """``C(alpha) = int_0^1 E|b|^2 dt`` by the midpoint rule on ``n_times`` cells."""
    times = (torch.arange(n_times, dtype=torch.float64) + 0.5) / n_times
    with torch.no_grad():
        return float(cost_profile(g, path, xs, times.to(xs.device)).mean())


def optimize_path(g: G, path: nn.Module, draw: Callable[[int, torch.Generator], Tensor],
                  steps: int = 300, lr: float = 0.05, batch: int = 128, n_times: int = 8,
                  generator: torch.Generator | None = None) -> list[float]:
    """Minimise ``C(alpha)`` over the parameters of ``path`` with ``g`` frozen (Adam, the
    learning rate decaying to 0 on a cosine).

    Each step draws ``batch`` fresh samples ``draw(batch, generator) -> (batch, K, *D)``
    and stratified times (one uniform draw in each of ``n_times`` cells). Returns the
    per-step cost estimates.
    """
    if steps < 0 or batch < 1 or n_times < 1:
        raise ConfigError("path optimisation needs steps >= 0, batch >= 1 and times >= 1")
    params = [p for p in path.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    history = []
    with torch.enable_grad():
        for _ in range(steps):
            xs = draw(batch, generator)
            u = torch.rand(n_times, generator=generator, dtype=torch.float64)
            times = ((torch.arange(n_times, dtype=torch.float64) + u) / n_times).to(xs.device)
            cost = cost_profile(g, path, xs, times).mean()
            grads = torch.autograd.grad(cost, params)
            for p, gr in zip(params, grads):
                p.grad = gr
            opt.step()
            schedule.step()
            history.append(float(cost.detach()))
    return history
