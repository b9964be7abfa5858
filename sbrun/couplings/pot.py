"""One front door for discrete couplings: exact OT, entropic OT (Sinkhorn), independent.

Problem (cost ``c(x, y) = |x - y|^2 / 2``, ``eps = sigma^2``)::

    min_{P 1 = a, P^T 1 = b}  <P, c> - eps H(P)      (H(P) = -sum P log P)

whose solution is ``P_ij = a_i b_j exp((f_i + g_j - c_ij) / eps)``: the static
Schrödinger bridge of ``dX = sigma dW`` between the two clouds. In POT's notation this is
``ot.sinkhorn(a, b, M, reg=2 sigma^2)`` with ``M`` the squared distances.

``sinkhorn_log`` (the robust default for small ``sigma``) is our own solver: log-domain
Sinkhorn with eps-scaling (Kosowsky & Yuille 1994; Schmitzer 2019), kernel iterations
stabilised by absorbing the scalings into the potentials (Schmitzer 2019, Sec. 3), and
over-relaxation (Thibault et al. 2017) with a safeguard that halves the
relaxation when the marginal error grows.
"""

from __future__ import annotations

import math
import warnings

import ot
import torch
from torch import Tensor

from sbrun.couplings import scaling
from sbrun.couplings.base import (
    CouplingResult,
    half_sq_dists,
    marginal_error,
    weights,
)
from sbrun.errors import ConfigError, check_positive

METHODS = ("exact", "sinkhorn", "sinkhorn_log", "independent")
DEFAULT_MAX_ITER = {"exact": 1_000_000, "sinkhorn": 5000, "sinkhorn_log": 5000}
_TINY = 1e-300
_EXP_FLOOR = 700.0  # exponents are clamped at -700: no subnormals (slow on CPU), no -inf
_ABSORB = 20.0  # absorb scalings into the potentials once |log u| exceeds this
_CHECK = 10  # error checks (and the over-relaxation safeguard) every _CHECK iterations


def solve_coupling(x0: Tensor, x1: Tensor, *, method: str = "exact",
                   sigma: float | None = None, a: Tensor | None = None,
                   b: Tensor | None = None, max_iter: int | None = None, tol: float = 1e-6,
                   warn: bool = True, options: dict | None = None) -> CouplingResult:
    """Solve the coupling between ``x0: (n, *D)`` and ``x1: (m, *D)``.

    Args:
        method: ``exact`` (``ot.emd``, network simplex), ``sinkhorn`` (POT's kernel
            Sinkhorn, fast but underflows for small ``sigma``), ``sinkhorn_log`` (our
            eps-scaled log-domain solver; robust down to ``sigma ~ 5e-4`` on unit-scale
            data) or ``independent`` (``P = a b^T``).
        sigma: reference noise, ``eps = sigma^2``; required by the Sinkhorn methods.
        a, b: weights ``(n,)``, ``(m,)`` (uniform by default, normalised to 1).
        max_iter: iteration cap (default per method: ``DEFAULT_MAX_ITER``).
        tol: target marginal error ``|P 1 - a|_1 + |P^T 1 - b|_1``.
        warn: emit a ``RuntimeWarning`` with the achieved error when not converged.
        options: extra keyword arguments of :func:`sinkhorn_log` (``scaling``,
            ``stage_tol``, ``dtype``, ``f0``, ...); ``sinkhorn_log`` only.

    Returns:
        :class:`CouplingResult`; plan and potentials in ``x0``'s floating dtype (float64
        otherwise) on ``x0.device``. Computations run in float64, except ``sinkhorn_log``
        on float32 CPU clouds with positive weights, ``tol >= 1e-5`` and a well
        conditioned ``eps`` (:func:`_cost`), solved in float32 by
        :func:`sbrun.couplings.scaling.sinkhorn_scaling`.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown coupling method '{method}'; valid: {', '.join(METHODS)}")
    if options and method != "sinkhorn_log":
        raise ConfigError(f"solver options {sorted(options)} apply to sinkhorn_log only, not '{method}'")
    wa, wb = weights(a, x0.shape[0], "a", x0), weights(b, x1.shape[0], "b", x0)
    C, fast = _cost(x0, x1, method, sigma, wa, wb, tol, options)
    iters = DEFAULT_MAX_ITER.get(method, 0) if max_iter is None else int(max_iter)
    if method == "independent":
        plan, pots, n_iter, ok = wa[:, None] * wb[None, :], None, 0, True
    elif method == "exact":
        plan, pots, n_iter, ok = _exact(C, wa, wb, iters)
    else:
        if sigma is None:
            raise ConfigError(f"coupling method '{method}' needs sigma > 0")
        eps = check_positive("sigma", float(sigma)) ** 2
        solver = _sinkhorn_scaling if fast else _sinkhorn_pot if method == "sinkhorn" else sinkhorn_log
        plan, pots, n_iter = solver(C, wa, wb, eps, tol=tol, max_iter=iters, **(options or {}))
        ok = True
    err = marginal_error(plan, wa, wb)
    converged = bool(ok and err <= max(tol, 1e-12 * C.shape[0]))
    if warn and not converged:
        warnings.warn(f"coupling '{method}' did not converge: marginal error {err:.3g} "
                      f"(tol {tol:.3g}) after {n_iter} iterations", RuntimeWarning,
                      stacklevel=2)
    dtype = x0.dtype if x0.is_floating_point() else torch.float64
    cost = float((plan * C).sum())
    if pots is not None:
        pots = (pots[0].to(dtype), pots[1].to(dtype))
    return CouplingResult(plan.to(dtype), cost, pots, converged, n_iter, err)


def float32_cpu(x0: Tensor, x1: Tensor, sigma: float | None) -> bool:
    """Whether an entropic problem (``sigma > 0``) has float32 CPU clouds, the case the
    float32 scaling-domain solver may serve (it also needs :func:`scaling.suited`)."""
    return (sigma is not None and float(sigma) > 0 and x0.dtype == x1.dtype == torch.float32
            and x0.device.type == x1.device.type == "cpu")


def _cost(x0: Tensor, x1: Tensor, method: str, sigma: float | None, a: Tensor, b: Tensor,
          tol: float, options: dict | None) -> tuple[Tensor, bool]:
    """The cost, float32 where :func:`sbrun.couplings.scaling.sinkhorn_scaling` serves the
    problem (then ``True``), else float64."""
    opts = options or {}
    if (method == "sinkhorn_log" and float32_cpu(x0, x1, sigma)
            and set(opts) <= {*scaling.OPTIONS, "dtype"} and opts.get("dtype", torch.float32) == torch.float32
            and bool((a > 0).all()) and bool((b > 0).all())):
        C = half_sq_dists(x0, x1, torch.float32)
        if scaling.suited(float(C.max()), float(sigma) ** 2, tol):
            return C, True
    return half_sq_dists(x0, x1), False


def _sinkhorn_scaling(C: Tensor, a: Tensor, b: Tensor, eps: float, tol: float, max_iter: int,
                      **options):
    """:func:`sbrun.couplings.scaling.sinkhorn_scaling` on tensors (float32 CPU ``C``)."""
    options.pop("dtype", None)
    plan, (f, g), n_iter, _ = scaling.sinkhorn_scaling(C.numpy(), a.numpy(), b.numpy(), eps, tol=tol,
                                                       max_iter=max_iter, **options)
    return torch.from_numpy(plan), (torch.from_numpy(f), torch.from_numpy(g)), n_iter


def _exact(C: Tensor, a: Tensor, b: Tensor, max_iter: int):
    """Network simplex on ``M = 2c``; duals of ``M`` halved give potentials for ``c``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan, log = ot.emd(a, b, 2.0 * C, numItermax=max_iter, log=True)
    pots = (0.5 * log["u"].to(C), 0.5 * log["v"].to(C))
    return plan.to(C), pots, 0, int(log["result_code"]) == 1


def _sinkhorn_pot(C: Tensor, a: Tensor, b: Tensor, eps: float, tol: float, max_iter: int):
    """POT's kernel Sinkhorn on ``M = 2c`` with ``reg = 2 eps``.

    POT stops on the L2 norm of the column error; ``tol / sqrt(max(n, m))`` makes that
    imply our L1 criterion. ``f = eps log(u / a)``, ``g = eps log(v / b)``.
    """
    thr = tol / math.sqrt(max(C.shape))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan, log = ot.sinkhorn(a, b, 2.0 * C, 2.0 * eps, method="sinkhorn",
                                numItermax=max_iter, stopThr=thr, log=True)
    f = eps * (log["u"].to(C).clamp_min(_TINY) / a.clamp_min(_TINY)).log()
    g = eps * (log["v"].to(C).clamp_min(_TINY) / b.clamp_min(_TINY)).log()
    return plan.to(C), (f, g), int(log.get("niter", max_iter))


# -- log-domain Sinkhorn with eps-scaling -------------------------------------------------
def _exp_floor(dtype: torch.dtype) -> float:
    """Exponent floor of a kernel in ``dtype``: no subnormals (slow on CPU), no ``-inf``."""
    return _EXP_FLOOR if dtype == torch.float64 else 80.0


def _exp(Z: Tensor, dtype: torch.dtype | None) -> Tensor:
    """``exp(Z)`` in ``dtype`` (default ``Z``'s): the exponent is formed in ``Z``'s
    precision and rounded only before the ``exp``, so a float32 kernel carries a relative
    error of ~1e-7 whatever the size of the potentials."""
    Z = Z if dtype is None or dtype == Z.dtype else Z.to(dtype)
    return Z.clamp_(min=-_exp_floor(Z.dtype)).exp_()


def _safe_kernel(C: Tensor, a: Tensor, f: Tensor, eps: float,
                 dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """Kernel for ``f`` with ``g_j = min_{i: a_i > 0} (c_ij - f_i)`` (the c-transform),
    so that ``K_ij = exp((f_i + g_j - c_ij) / eps) <= 1`` with a 1 in every column: no
    overflow and no empty column, whatever ``f`` is. Returns ``(g, K)``, ``K`` in
    ``dtype`` (default ``C``'s)."""
    Z = (f[:, None] - C).div_(eps)
    top = Z.amax(0) if bool((a > 0).all()) else Z[a > 0].amax(0)
    return -eps * top, _exp(Z.sub_(top), dtype)


def _kernel(f: Tensor, g: Tensor, C: Tensor, eps: float, dtype: torch.dtype | None = None) -> Tensor:
    """Stabilised kernel ``K_ij = exp((f_i + g_j - c_ij) / eps)`` in ``dtype``."""
    return _exp((f[:, None] + g[None, :] - C) / eps, dtype)


def _mv(K: Tensor, x: Tensor) -> Tensor:
    """``K @ x`` in ``x``'s dtype (``K`` may be float32)."""
    return (K @ x.to(K.dtype)).to(x.dtype)


def _logmv(K: Tensor, x: Tensor) -> Tensor:
    """``log(K @ x)`` floored at ``log(_TINY)``."""
    return _mv(K, x).clamp_(min=_TINY).log_()


def _stage(C: Tensor, a: Tensor, b: Tensor, f: Tensor, eps: float, iters: int, tol: float,
           omega: float, dtype: torch.dtype | None = None):
    """Sinkhorn at fixed ``eps`` warm-started from ``f`` (``g`` starts at the c-transform
    of ``f``, then a plain step), at most ``iters`` iterations.

    Scalings ``u = exp(lu)``, ``v = exp(lv)`` on the stabilised kernel ``K`` are updated
    with over-relaxation ``lu <- (1 - w) lu - w log(K (b v))`` (``w = 1``: Sinkhorn).
    At checks (each of the first ``_CHECK`` iterations, then every ``_CHECK``) the error
    of the plan with a plain column update (so ``P^T 1 = b``) is measured; that plain
    update is kept when the error is below ``tol``; scalings beyond ``exp(_ABSORB)`` are
    absorbed into the potentials.
    Returns ``(f, g, err, iterations)`` with ``err`` that of the last check.
    """
    g, K = _safe_kernel(C, a, f, eps, dtype)
    lu, lv = torch.zeros_like(f), torch.zeros_like(g)
    saved, err, k = (f, g, math.inf), math.inf, 0
    while k < iters:
        w = omega if k else 1.0  # a plain first step after the change of eps
        lu = _logmv(K, b * lv.exp()).mul_(-w).add_(lu, alpha=1 - w)
        lKu = _logmv(K.T, a * lu.exp())
        k += 1
        lv_new = lKu.mul(-w).add_(lv, alpha=1 - w)
        if not (k < _CHECK or k % _CHECK == 0 or k == iters):
            lv = lv_new  # (absorption is decided at checks only: fewer small ops per step)
            continue
        big = torch.maximum(lu.abs().max(), lv_new.abs().max())
        # check: the error of the plan with a plain column update (exact columns)
        row = (a - a * lu.exp() * _mv(K, b * (-lKu).exp())).abs().sum()
        err, big = torch.stack([row, big]).tolist()
        lv = -lKu if err < tol else lv_new
        if err < tol:
            break
        if k % _CHECK == 0 and not err <= 2.0 * saved[2]:  # diverging (or NaN):
            f, g, omega = saved[0], saved[1], 1.0 + 0.5 * (omega - 1.0)  # halve relaxation
            lu, lv, K = torch.zeros_like(lu), torch.zeros_like(lv), _kernel(f, g, C, eps, dtype)
            continue
        if k % _CHECK == 0:
            saved = (f + eps * lu, g + eps * lv, err)
        if big > _ABSORB:
            f, g, lu, lv, K = _absorb(C, f, g, lu, lv, eps, dtype)
    return f + eps * lu, g + eps * lv, err, k


def _absorb(C: Tensor, f: Tensor, g: Tensor, lu: Tensor, lv: Tensor, eps: float,
            dtype: torch.dtype | None = None):
    """Move the scalings into the potentials and rebuild the kernel (Schmitzer 2019)."""
    f, g = f + eps * lu, g + eps * lv
    return f, g, torch.zeros_like(lu), torch.zeros_like(lv), _kernel(f, g, C, eps, dtype)


def sinkhorn_log(C: Tensor, a: Tensor, b: Tensor, eps: float, tol: float = 1e-6,
                 max_iter: int = 5000, scaling: float = 0.5, inner: int = 100,
                 stage_tol: float = 1e-3, relax: float = 3.0, f0: Tensor | None = None,
                 start: float | None = None,
                 dtype: torch.dtype | None = None) -> tuple[Tensor, tuple[Tensor, Tensor], int]:
    """Entropic OT plan by eps-scaled, stabilised log-domain Sinkhorn.

    Solves ``min <P, C> - eps H(P)`` s.t. ``P 1 = a``, ``P^T 1 = b``. The
    regularisation runs geometrically (factor ``scaling``) from ``max C`` down to
    ``eps``, warm-starting the potentials; each intermediate stage iterates until its
    marginal error is below ``max(tol, stage_tol)`` (at most ``inner`` iterations), the
    last one until it is below ``tol`` (``max_iter`` iterations in all). Every stage is
    over-relaxed with ``w = 2 / (1 + relax sqrt(e / max C))`` clipped to ``[1, 1.98]``
    (the SOR optimum for a spectral gap ``~ e / max C``; Thibault et al. 2017), halved
    when the error grows. Cost per iteration: two ``(n, m)`` matrix-vector products;
    one ``exp`` pass per stage and per absorption.

    Args:
        C: ``(n, m)`` float64 cost ``|x - y|^2 / 2``; a, b: ``(n,)``, ``(m,)`` weights.
        f0: warm start ``(n,)`` for ``f`` (e.g. the c-transform of the previous
            minibatch's ``g``); the scaling then starts at ``start`` (default ``eps``:
            no scaling stages) instead of ``max C``.
        start: first regularisation of the scaling (default ``max C``, or ``eps`` with
            ``f0``).
        dtype: dtype of the kernel and its matrix-vector products (``torch.float32``
            halves their cost). Potentials, cost and errors stay in ``C``'s dtype and
            every kernel is formed from them, so rounding does not accumulate.

    Returns:
        ``(plan (n, m), (f (n,), g (m,)), iterations)`` with
        ``plan_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)`` and ``P^T 1 = b`` exactly
        (the plan in ``dtype``).
    """
    scale = float(C.max())
    f = torch.zeros_like(a) if f0 is None else f0.to(a)
    if start is None:
        start = scale if f0 is None else eps
    e, it = max(start, eps), 0
    while True:
        final = e <= eps
        omega = 2.0 / (1.0 + relax * math.sqrt(e / scale)) if scale > 0 else 1.0
        omega = min(max(omega, 1.0), 1.98)
        left = max(max_iter - it, 0)
        budget, stol = (left, 0.9 * tol) if final else (min(inner, left), max(tol, stage_tol))
        f, _, _, k = _stage(C, a, b, f, e, budget, stol, omega, dtype)
        it += k
        if final:
            break
        e = max(e * scaling, eps)
    g, K = _safe_kernel(C, a, f, eps, dtype)
    lv = -_logmv(K.T, a)  # exact columns
    plan = K.mul_(a[:, None].to(K.dtype)).mul_((b * lv.exp())[None, :].to(K.dtype))
    return plan, (f, g + eps * lv), it
