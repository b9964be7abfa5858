"""Entropic OT plans in the scaling domain, float32 NumPy: the fast path for minibatch
couplings on CPU.

Same problem and conventions as :func:`sbrun.couplings.pot.sinkhorn_log`::

    min_{P 1 = a, P^T 1 = b}  <P, C> - eps H(P),   P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)

The iterates are scalings ``u, v`` of a *stabilised* kernel
``K_ij = exp((f_i + g_j - C_ij) / e)`` (``P = diag(a u) K diag(b v)``), so an iteration is
two BLAS matrix-vector products (``K (b v)``, ``K^T (a u)``) and a few vector operations,
where the log domain needs a log-sum-exp over the whole matrix. What keeps it exact at
small ``eps``:

* eps-scaling (Kosowsky & Yuille 1994; Schmitzer 2019): ``e`` runs geometrically
  (``scaling``) from ``start_ratio * max C`` down to ``eps``; each stage starts from the
  previous potentials, ``g`` their c-transform (``K <= 1``, a 1 in every column);
* absorption (stabilised scaling, Schmitzer 2019 Sec. 3): once ``|log u|`` or ``|log v|``
  exceeds ``ABSORB``, the scalings move into the potentials (``f += e log u``,
  ``g += e log v``), ``u = v = 1`` and the kernel is rebuilt from the new potentials;
* kernel exponents floored at ``-FLOOR``: no float32 subnormals (slow) and never an empty
  row; the floor adds at most ``exp(max log u + max log v - FLOOR)`` of mass, kept below
  ``exp(-FINAL_MARGIN)`` in a converged plan (by one more absorption if need be);
* over-relaxation (Thibault et al. 2017) as in ``sinkhorn_log``, halved (back to the last
  good potentials) when the error grows; the error is that of the plan with a plain
  column update (exact columns), the plan returned.

Potentials are float64 vectors and the kernel is formed from them at every rebuild, so
rounding does not accumulate; between rebuilds the iteration, a fixed point of ``K``,
corrects the rounding of its float32 scalings.
"""

from __future__ import annotations

import math

import numpy as np

FLOOR = 40.0  # kernel exponents >= -FLOOR (float32: products with b v stay normal)
ABSORB = 20.0  # absorb the scalings once |log u| or |log v| exceeds this
FINAL_MARGIN = 16.0  # a converged plan's floor mass <= exp(-FINAL_MARGIN)
RAMP = 5  # the relaxation grows from 1 to omega over the first RAMP iterations of a kernel
CHECK = 10  # error checks every CHECK iterations (intermediate stages: also every 2nd before)
# where float32 serves: kernel exponents carry an error ~ 4 * 2^-24 * max C / eps (<= 5e-3
# above MIN_RATIO), and the marginal error goes down to ~1e-6 (MIN_TOL leaves a margin)
MIN_RATIO = 5e-5
MIN_TOL = 1e-5
OPTIONS = ("scaling", "inner", "stage_tol", "relax")  # the keywords shared with sinkhorn_log


def suited(top: float, eps: float, tol: float) -> bool:
    """Whether float32 solves the problem of largest cost ``top`` at ``eps`` to ``tol``."""
    return tol >= MIN_TOL and eps >= MIN_RATIO * top


class _Scalings:
    """Scalings ``u``, ``v`` (float32) of the kernel of ``(f, g)`` at ``e``, the kernel
    formed in place in ``K`` (a float32 buffer shaped like ``C``)."""

    def __init__(self, C: np.ndarray, K: np.ndarray, f: np.ndarray, e: float):
        self.C, self.K, self.e = C, K, e
        self.floor = np.full(C.shape[1], -FLOOR, np.float32)
        Z = np.subtract(f.astype(np.float32)[:, None], C, out=K)
        top = Z.max(0)  # g = its c-transform min_i (C_ij - f_i): column maxima 1
        Z -= top[None, :]
        self._exp(f, -top.astype(np.float64))

    def reset(self, f: np.ndarray, g: np.ndarray) -> None:
        """Kernel of ``(f, g)`` (absorbed potentials included), ``u = v = 1``."""
        Z = np.subtract(f.astype(np.float32)[:, None], self.C, out=self.K)
        Z += g.astype(np.float32)[None, :]
        self._exp(f, g)

    def _exp(self, f: np.ndarray, g: np.ndarray) -> None:
        """``K = exp(max(Z / e, -FLOOR))`` from ``Z = f_i + g_j - C_ij`` in ``K``."""
        K = self.K
        K *= np.float32(1.0 / self.e)
        np.maximum(K, self.floor[None, :], out=K)  # (a row: faster than a scalar here)
        np.exp(K, out=K)
        self.f, self.g = f, g
        self.u, self.v = np.ones(len(f), np.float32), np.ones(len(g), np.float32)

    def potentials(self) -> tuple[np.ndarray, np.ndarray]:
        return (self.f + self.e * np.log(self.u, dtype=np.float64),
                self.g + self.e * np.log(self.v, dtype=np.float64))

    def absorb(self) -> None:
        self.reset(*self.potentials())

    def big(self) -> bool:
        """Whether ``|log u|`` or ``|log v|`` exceeds ``ABSORB`` (or is NaN)."""
        lo, hi = math.exp(-ABSORB), math.exp(ABSORB)
        return not (lo <= self.u.min() and self.u.max() <= hi
                    and lo <= self.v.min() and self.v.max() <= hi)


def _relax(x: np.ndarray, y: np.ndarray, w: float) -> None:
    """``x <- x^(1 - w) y^(-w) = x (x y)^(-w)`` in place (``w = 1``: ``x = 1 / y``)."""
    if w == 1.0:
        np.reciprocal(y, out=x)
    else:
        z = x * y
        x *= np.power(z, np.float32(-w), out=z)


def _check(st: _Scalings, a: np.ndarray, b: np.ndarray, t: np.ndarray) -> tuple[float, bool]:
    """Row error of the plan with the plain column update ``v = 1 / t`` (its columns are
    exact), and whether its floor mass, at most ``exp(-FLOOR) (a . u) (b . v)``, is below
    ``exp(-FINAL_MARGIN)``."""
    bv = b / t
    err = float(np.abs(st.u * (st.K @ bv) - 1) @ a)
    return err, float(a @ st.u) * float(bv.sum()) <= math.exp(FLOOR - FINAL_MARGIN)


def _iterate(st: _Scalings, a: np.ndarray, b: np.ndarray, budget: int, tol: float,
             omega: float, check: int = CHECK, early: bool = False) -> tuple[int, float]:
    """Sinkhorn on ``st`` until the marginal error is below ``tol`` (at most ``budget``
    iterations): ``u <- u^(1-w) / (K b v)^w``, then ``v`` alike, ``w`` from 1 (plain
    Sinkhorn) to ``omega`` over the first ``RAMP`` iterations.

    At checks (every ``check``-th iteration, the last, and with ``early`` every second
    of the first ``check``) the error of the plan with a plain column update (:func:`_check`)
    is measured; that update is kept when the error is below ``tol`` (and the floor's
    mass small, else the scalings are absorbed first) or at the last iteration. The
    scalings' size is checked at each of the first ``check`` iterations (they move most
    after a new kernel) and at checks. Returns ``(iterations, error of the last check)``.
    """
    saved, err, k = (*st.potentials(), math.inf), math.inf, 0
    t = st.K.T @ (a * st.u)
    s = st.K @ (b * st.v)
    while k < budget:
        w = 1.0 + (omega - 1.0) * min(1.0, k / RAMP)
        _relax(st.u, s, w)
        t = st.K.T @ (a * st.u)
        k += 1
        if k % check == 0 or k == budget or (early and k < check and k % 2 == 0):
            err, floor_ok = _check(st, a, b, t)
            if (err < tol and floor_ok) or k == budget:
                break
            _relax(st.v, t, w)
            if k % check == 0 and not err <= 2.0 * saved[2]:  # diverging (or NaN)
                omega = 1.0 + 0.5 * (omega - 1.0)
                st.reset(saved[0], saved[1])
            elif st.big() or err < tol:
                st.absorb()
            elif k % check == 0:
                saved = (*st.potentials(), err)
        else:
            _relax(st.v, t, w)
            if k < check and st.big():
                st.absorb()
        s = st.K @ (b * st.v)
    if k == 0:
        err = _check(st, a, b, t)[0]
    np.reciprocal(t, out=st.v)  # the plain column update of the last check
    return k, err


def sinkhorn_scaling(C: np.ndarray, a: np.ndarray, b: np.ndarray, eps: float,
                     tol: float = 1e-6, max_iter: int = 5000, scaling: float = 0.1,
                     start_ratio: float = 0.01, inner: int = 100, stage_tol: float = 1e-2,
                     relax: float = 3.0, check: int = CHECK):
    """Entropic OT plan by eps-scaled, stabilised scaling-domain Sinkhorn in float32.

    Args:
        C: ``(n, m)`` cost (float32; other dtypes are converted); a, b: positive weights
            ``(n,)``, ``(m,)`` summing to 1.
        eps: regularisation (``sigma^2``); tol: target ``|P 1 - a|_1 + |P^T 1 - b|_1``.
        max_iter: iterations in all; scaling: factor of ``e`` per stage; start_ratio: first
            ``e`` over ``max C``; inner, stage_tol: iteration cap and error target of the
            intermediate stages; relax: over-relaxation ``w = 2 / (1 + relax sqrt(e / max C))``
            clipped to ``[1, 1.98]``; check: iterations between error checks.

    Returns:
        ``(plan (n, m) float32, (f, g) float64, iterations, err)`` with
        ``plan_ij ~= a_i b_j exp((f_i + g_j - C_ij) / eps)`` and ``err`` the marginal error
        of the plan's last check (``<= 0.9 tol`` when converged).
    """
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):  # NaN: safeguarded
        return _solve(np.ascontiguousarray(C, dtype=np.float32), a, b, eps, tol, max_iter,
                      scaling, start_ratio, inner, stage_tol, relax, check)


def _solve(C, a, b, eps, tol, max_iter, scaling, start_ratio, inner, stage_tol, relax, check):
    a32, b32 = np.asarray(a, np.float32), np.asarray(b, np.float32)
    top, K = (float(C.max()) if C.size else 0.0), np.empty_like(C)
    f, e, it = np.zeros(C.shape[0]), max(eps, start_ratio * top), 0
    while True:
        final = e <= eps
        omega = min(max(2.0 / (1.0 + relax * math.sqrt(e / top)), 1.0), 1.98) if top > 0 else 1.0
        left = max(max_iter - it, 0)
        budget, stol = (left, 0.9 * tol) if final else (min(inner, left), max(tol, stage_tol))
        st = _Scalings(C, K, f, e)
        k, err = _iterate(st, a32, b32, budget, stol, omega, check, early=not final)
        it += k
        if final:
            break
        f = st.potentials()[0]
        e = max(e * scaling, eps)
    K *= (a32 * st.u)[:, None]
    K *= (b32 * st.v)[None, :]
    return K, st.potentials(), it, err
