"""Minibatch couplings for training: how a batch's rows are paired before a regression
(I-CFM, OT-CFM and SB-CFM of Tong et al. 2024; a paired data set's own rows).

``exact_ot`` solves the assignment problem of the squared-distance cost (an optimal plan
between two uniform clouds of equal size is a permutation); ``entropic_ot`` solves the
entropic plan of the reference ``dX = sigma dW`` (``eps = sigma^2``) and draws pairs from it.
"""

from __future__ import annotations

import warnings
from functools import partial

import numpy as np
import ot
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from sbrun.couplings.base import half_sq_dists, sample_pairs
from sbrun.couplings.pot import float32_cpu, solve_coupling
from sbrun.couplings.scaling import sinkhorn_scaling, suited
from sbrun.errors import ConfigError, check_choice

COUPLINGS = ("independent", "exact_ot", "entropic_ot", "paired")


def assignment(C: np.ndarray) -> np.ndarray:
    """The optimal permutation for a square cost ``C: (n, n)`` (uniform weights).

    POT's network simplex (``ot.emd``) returns a vertex of the Birkhoff polytope, i.e. a
    permutation matrix, 2.5-4x faster than ``scipy.optimize.linear_sum_assignment`` at
    n = 256-512; should a degenerate plan not be one, the assignment solver decides.
    """
    n = C.shape[0]
    w = np.full(n, 1.0 / n)
    plan = ot.emd(w, w, C)
    perm = plan.argmax(1)
    if np.unique(perm).size == n and np.allclose(plan[np.arange(n), perm], 1.0 / n):
        return perm
    return linear_sum_assignment(C)[1]


# minibatch plans (training): float32 kernel, eps divided by 10 per stage, loose stages;
# the last stage still meets ``tol`` (``tests/couplings/test_pot.py`` checks against POT)
MINIBATCH_SINKHORN = {"dtype": torch.float32, "scaling": 0.1, "stage_tol": 1e-2}


def minibatch_pair(x0: Tensor, x1: Tensor, method: str = "exact", sigma: float | None = None,
                   generator: torch.Generator | None = None, *, tol: float = 1e-4,
                   max_iter: int = 1000, warn: bool = False) -> tuple[Tensor, Tensor]:
    """Re-pair a minibatch by an OT plan (OT-CFM / SB-CFM, Tong et al. 2024).

    ``exact`` with ``n == m`` (uniform weights) solves the assignment problem
    (:func:`assignment`; an optimal plan is a permutation) and returns
    ``(x0, x1[perm])``. Otherwise the plan is solved with :func:`solve_coupling` and
    ``n`` pairs ``(i, j) ~ P`` are drawn with replacement: ``(x0[i], x1[j])``
    (``sinkhorn_log`` on float32 CPU batches: :func:`scaling_plan`). ``independent``
    returns the batch unchanged.

    Args:
        x0: ``(n, *D)``; x1: ``(m, *D)``; sigma: entropic ``sigma`` (``eps = sigma^2``).

    Returns:
        ``(x0', x1')``, each ``(n, *D)``, on the input device.
    """
    if method == "independent":
        return x0, x1
    if method == "exact" and x0.shape[0] == x1.shape[0]:
        perm = assignment(half_sq_dists(x0, x1, torch.float64).cpu().numpy())
        return x0, x1[torch.as_tensor(perm, device=x1.device)]
    plan = scaling_plan(x0, x1, sigma, tol, max_iter, warn) if method == "sinkhorn_log" else None
    if plan is not None and (generator is None or generator.device.type == "cpu"):
        i, j = draw_pairs(plan, x0.shape[0], generator)
        return x0[i], x1[j]
    if plan is None:
        options = MINIBATCH_SINKHORN if method == "sinkhorn_log" else None
        plan = solve_coupling(x0, x1, method=method, sigma=sigma, tol=tol, max_iter=max_iter,
                              warn=warn, options=options).plan
    i, j = sample_pairs(plan, x0.shape[0], generator)
    return x0[i.to(x0.device)], x1[j.to(x1.device)]


def scaling_plan(x0: Tensor, x1: Tensor, sigma: float | None, tol: float, max_iter: int,
                 warn: bool) -> Tensor | None:
    """The entropic plan (uniform weights) by the float32 scaling-domain solver
    (:func:`sbrun.couplings.scaling.sinkhorn_scaling`): one conversion each way, no
    float64 copy. ``None`` unless both batches are float32 on the CPU and the problem
    suits float32 (:func:`sbrun.couplings.scaling.suited`)."""
    if not float32_cpu(x0, x1, sigma):
        return None
    C, eps = half_sq_dists(x0, x1, torch.float32).numpy(), float(sigma) ** 2
    if not suited(float(C.max()), eps, tol):
        return None
    n, m = C.shape
    plan, _, n_iter, err = sinkhorn_scaling(C, np.full(n, 1.0 / n), np.full(m, 1.0 / m), eps,
                                            tol=tol, max_iter=max_iter)
    if warn and not err <= tol:
        warnings.warn(f"coupling 'sinkhorn_log' did not converge: marginal error {err:.3g} "
                      f"(tol {tol:.3g}) after {n_iter} iterations", RuntimeWarning, stacklevel=3)
    return torch.from_numpy(plan)


def draw_pairs(plan: Tensor, k: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``k`` index pairs ``(i, j) ~ P / sum(P)`` with replacement (CPU plan and generator),
    in two stages: rows ``i`` from the row sums, then ``j`` by the inverse CDF of row ``i``
    (at n = m = 512 ~2.5x faster than :func:`sample_pairs`' multinomial over the n m cells;
    other draws, same law)."""
    i = torch.multinomial(plan.sum(1, dtype=torch.float64), k, replacement=True, generator=generator)
    cdf = plan[i].cumsum(1)
    u = torch.rand(k, 1, generator=generator, dtype=cdf.dtype) * cdf[:, -1:]
    j = torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_max_(plan.shape[1] - 1)
    return i, j


def couple(batch, coupling: str, sigma: float | None, paired_data: bool) -> tuple[Tensor, Tensor]:
    """Pairs ``(x0, x1)``, each ``(B, *D)``, from a batch under ``coupling``.

    ``independent`` returns independent draws (a paired batch is decoupled by a random
    permutation of ``x1``); ``paired`` keeps a paired data set's rows together;
    ``exact_ot`` / ``entropic_ot`` re-pair by the minibatch plan of cost ``|x - y|^2 / 2``
    (``entropic_ot``: ``eps = sigma^2``, POT ``reg = 2 sigma^2``).
    """
    x0, x1 = batch.x0, batch.x1
    if coupling == "paired":
        if not paired_data:
            raise ConfigError("method.coupling=paired needs paired data (data=npz data.paired=true)")
        return x0, x1
    if coupling == "independent":
        if paired_data:
            perm = torch.randperm(x1.shape[0], generator=batch.generator).to(x1.device)
            x1 = x1[perm]
        return x0, x1
    return ot_pair_fn(coupling, sigma)(x0, x1, generator=batch.generator)


def ot_pair_fn(coupling: str, sigma: float | None):
    """``(x0, x1, generator=g) -> (x0', x1')`` re-pairing by the ``exact_ot`` /
    ``entropic_ot`` minibatch plan (what the trainer prefetches: ``Method.pair_fn``)."""
    method = "exact" if coupling == "exact_ot" else "sinkhorn_log"
    return partial(minibatch_pair, method=method, sigma=sigma)


def check_coupling(coupling: str) -> None:
    check_choice("method.coupling", coupling, COUPLINGS)
