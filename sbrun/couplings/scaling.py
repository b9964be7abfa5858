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

Potentials and ``log u``, ``log v`` are float64 vectors; the kernel is formed in
float32 from them at every rebuild, so rounding does not accumulate.
"""

from __future__ import annotations

import math

import numpy as np

FLOOR = 40.0  # kernel exponents >= -FLOOR (float32: products with b v stay normal)
ABSORB = 20.0  # absorb the scalings once |log u| or |log v| exceeds this
FINAL_MARGIN = 16.0  # a converged plan's floor mass <= exp(-FINAL_MARGIN)
CHECK = 10  # error checks every CHECK iterations (and each of the first CHECK)
# where float32 serves: kernel exponents carry an error ~ 4 * 2^-24 * max C / eps (<= 5e-3
# above MIN_RATIO), and the marginal error goes down to ~1e-6 (MIN_TOL leaves a margin)
MIN_RATIO = 5e-5
MIN_TOL = 1e-5
OPTIONS = ("scaling", "inner", "stage_tol", "relax")  # the keywords shared with sinkhorn_log


def suited(top: float, eps: float, tol: float) -> bool:
    """Whether float32 solves the problem of largest cost ``top`` at ``eps`` to ``tol``."""
    return tol >= MIN_TOL and eps >= MIN_RATIO * top


def _kernel(C: np.ndarray, f: np.ndarray, g: np.ndarray, e: float) -> np.ndarray:
    """``exp(max((f_i + g_j - C_ij) / e, -FLOOR))`` in float32."""
    Z = np.subtract(f.astype(np.float32)[:, None], C)
    Z += g.astype(np.float32)[None, :]
    Z *= np.float32(1.0 / e)
    np.maximum(Z, np.float32(-FLOOR), out=Z)
    return np.exp(Z, out=Z)


def c_transform(C: np.ndarray, f: np.ndarray) -> np.ndarray:
    """``g_j = min_i (C_ij - f_i)`` (float64): the kernel of ``(f, g)`` has column maxima 1."""
    return (C - f.astype(np.float32)[:, None]).min(0).astype(np.float64)


class _Scalings:
    """Scalings ``u = exp(lu)``, ``v = exp(lv)`` of the kernel of ``(f, g)`` at ``e``."""

    def __init__(self, C: np.ndarray, f: np.ndarray, g: np.ndarray, e: float):
        self.C, self.e = C, e
        self.reset(f, g)

    def reset(self, f: np.ndarray, g: np.ndarray) -> None:
        """Kernel of ``(f, g)`` (absorbed potentials included), ``u = v = 1``."""
        self.f, self.g = f, g
        self.K = _kernel(self.C, f, g, self.e)
        self.lu, self.lv = np.zeros(len(f)), np.zeros(len(g))
        self.u, self.v = np.ones(len(f), np.float32), np.ones(len(g), np.float32)

    def potentials(self) -> tuple[np.ndarray, np.ndarray]:
        return self.f + self.e * self.lu, self.g + self.e * self.lv

    def absorb(self) -> None:
        self.reset(*self.potentials())

    def big(self) -> float:
        """``max(|log u|, |log v|)``."""
        return float(max(np.abs(self.lu).max(), np.abs(self.lv).max()))

    def step(self, s: np.ndarray, a: np.ndarray, w: float) -> np.ndarray:
        """Relaxed update of ``u`` from ``s = K (b v)``; returns ``t = K^T (a u)``."""
        self.lu *= 1.0 - w
        self.lu -= w * np.log(s, dtype=np.float64)
        np.exp(self.lu, out=self.u, casting="unsafe")
        return self.K.T @ (a * self.u)

    def set_v(self, lv: np.ndarray) -> None:
        self.lv = lv
        np.exp(lv, out=self.v, casting="unsafe")


def _check(st: _Scalings, a: np.ndarray, b: np.ndarray, lt: np.ndarray) -> float:
    """Row error of the plan with the plain column update ``v = 1 / t`` (``lt = log t``),
    whose columns are exact: one more matrix-vector product."""
    return float(np.abs(st.u * (st.K @ (b * np.exp(-lt, dtype=np.float32))) - 1) @ a)


def _iterate(st: _Scalings, a: np.ndarray, b: np.ndarray, budget: int, tol: float,
             omega: float, check: int = CHECK) -> tuple[int, float]:
    """Sinkhorn on ``st`` until the marginal error is below ``tol`` (at most ``budget``
    iterations, the first a plain one).

    At checks (each of the first ``check`` iterations, every ``check``-th and the last)
    the error of the plan with a plain column update (:func:`_check`) is measured; that
    update is kept when the error is below ``tol`` (and the floor's mass below
    ``exp(-FINAL_MARGIN)``, else the scalings are absorbed first) or at the last iteration.
    Returns ``(iterations, error of the last check)``.
    """
    if budget <= 0:
        lt = np.log(st.K.T @ (a * st.u), dtype=np.float64)
        st.set_v(-lt)
        return 0, _check(st, a, b, lt)
    saved, err, k = (*st.potentials(), math.inf), math.inf, 0
    s = st.K @ (b * st.v)
    while k < budget:
        w = omega if k else 1.0
        lt = np.log(st.step(s, a, w), dtype=np.float64)
        k += 1
        lv = st.lv * (1.0 - w) - w * lt
        if k < check or k % check == 0 or k == budget:
            err = _check(st, a, b, lt)
            floor_ok = st.lu.max() - lt.min() <= FLOOR - FINAL_MARGIN
            if (err < tol and floor_ok) or k == budget:
                st.set_v(-lt)
                break
            st.set_v(lv)
            if k % check == 0 and not err <= 2.0 * saved[2]:  # diverging (or NaN)
                omega = 1.0 + 0.5 * (omega - 1.0)
                st.reset(saved[0], saved[1])
            elif st.big() > ABSORB or err < tol:
                st.absorb()
            elif k % check == 0:
                saved = (*st.potentials(), err)
        else:
            st.set_v(lv)
        s = st.K @ (b * st.v)
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
    top = float(C.max()) if C.size else 0.0
    f, e, it = np.zeros(C.shape[0]), max(eps, start_ratio * top), 0
    while True:
        final = e <= eps
        omega = min(max(2.0 / (1.0 + relax * math.sqrt(e / top)), 1.0), 1.98) if top > 0 else 1.0
        left = max(max_iter - it, 0)
        budget, stol = (left, 0.9 * tol) if final else (min(inner, left), max(tol, stage_tol))
        st = _Scalings(C, f, c_transform(C, f), e)
        k, err = _iterate(st, a32, b32, budget, stol, omega, check)
        it += k
        if final:
            break
        f = st.potentials()[0]
        e = max(e * scaling, eps)
    K = st.K
    K *= (a32 * st.u)[:, None]
    K *= (b32 * st.v)[None, :]
    return K, st.potentials(), it, err
