"""Coupled batches one step ahead: the next minibatch's plan is solved while this step trains.

A method that re-pairs its batches by a plan (minibatch OT, Sinkhorn) hands the trainer a
``pair_fn(x0, x1, generator=g) -> (x0', x1')`` (:meth:`sbrun.methods.base.Method.pair_fn`).
:class:`PairPrefetcher` draws batch ``k + 1`` as soon as batch ``k`` is handed out and
solves its coupling on a worker thread (POT, NumPy and PyTorch release the GIL), so the
coupling's cost hides behind the network step.

Resumed runs stay exact: every draw from the trainer's generator happens on the main
thread in a fixed order (batch ``k + 1`` and its coupling seed, then step ``k``'s own
draws); the worker samples pairs with a generator of its own seeded by that seed, and a
plan depends on its batch only. The batch not yet consumed (and its seed) is part of the
checkpoint, so a resumed run solves the same plan and draws the same pairs. With
``background=False`` the same jobs run on the main thread: bit-for-bit the same run.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from torch import Tensor

PairFn = Callable[[Tensor, Tensor, torch.Generator], tuple[Tensor, Tensor]]


class PairPrefetcher:
    """Coupled ``(x0, x1)`` batches of ``batch_size`` from ``data`` under ``pair_fn``.

    Args:
        data: has ``batch(n, generator) -> (x0, x1)`` (:class:`~sbrun.pipeline.data.BatchSource`).
        pair_fn: the coupling; called with a ``torch.Generator`` seeded per batch.
        generator: the trainer's generator (main thread only).
        background: solve the next plan on a worker thread (else on demand, same result).
    """

    def __init__(self, data, pair_fn: PairFn, batch_size: int, generator: torch.Generator,
                 background: bool = True):
        self.data, self.pair_fn, self.batch_size = data, pair_fn, int(batch_size)
        self.generator = generator
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="sbrun-pairs") if background else None
        self.pending: tuple[Tensor, Tensor, int] | None = None  # next batch, not yet consumed
        self.future: Future | None = None

    def _draw(self) -> tuple[Tensor, Tensor, int]:
        x0, x1 = self.data.batch(self.batch_size, self.generator)
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        return x0, x1, seed

    def _solve(self, job: tuple[Tensor, Tensor, int]) -> tuple[Tensor, Tensor]:
        x0, x1, seed = job
        return self.pair_fn(x0, x1, generator=torch.Generator().manual_seed(seed))

    def _submit(self, job: tuple[Tensor, Tensor, int]) -> None:
        self.pending = job
        self.future = self.pool.submit(self._solve, job) if self.pool is not None else None

    def next(self) -> tuple[Tensor, Tensor]:
        """This step's coupled pairs; starts solving the next batch's plan."""
        if self.pending is None:
            self._submit(self._draw())
        job, future = self.pending, self.future
        pairs = future.result() if future is not None else self._solve(job)
        self._submit(self._draw())
        return pairs

    def state_dict(self) -> dict:
        """The batch drawn for the next step (CPU tensors) and its coupling seed."""
        if self.pending is None:
            return {"pending": None}
        x0, x1, seed = self.pending
        return {"pending": (x0.cpu(), x1.cpu(), seed)}

    def load_state_dict(self, state: dict) -> None:
        pending = state.get("pending")
        if pending is not None:
            x0, x1, seed = pending
            self._submit((x0.cpu(), x1.cpu(), int(seed)))

    def close(self) -> None:
        """Wait for the worker (a pending plan is dropped) and stop it."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        self.pending, self.future = None, None
