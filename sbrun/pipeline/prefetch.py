"""Coupled batches ahead of the step: the next minibatches' plans are solved while this one trains.

A method that re-pairs its batches by a plan (minibatch OT, Sinkhorn) hands the trainer a
``pair_fn(x0, x1, generator=g) -> (x0', x1')`` (:meth:`sbrun.methods.base.Method.pair_fn`).
:class:`PairPrefetcher` keeps ``depth`` batches in flight (``trainer.prefetch``): when batch
``k`` is handed out, batch ``k + depth`` is drawn and its coupling solved on one of
``depth`` worker threads (POT, NumPy and PyTorch release the GIL), so the coupling's cost
hides behind the network step, and with ``depth`` workers on as many free cores a plan
may take up to ``depth`` network steps.

Resumed runs stay exact: every draw from the trainer's generator happens on the main
thread in a fixed order (batches ``1 .. depth + 1`` and their coupling seeds, then step
1's own draws, then batch ``depth + 2``, step 2's draws, ...); a worker samples pairs with
a generator of its own seeded by its batch's seed, and a plan depends on its batch only.
Every batch drawn but not yet consumed (and its seed) is part of the checkpoint, so a
resumed run solves the same plans and draws the same pairs. With ``background=False`` the
same jobs run on the main thread: bit-for-bit the same run as with the workers. Runs with
different depths draw their batches in different orders (same law, other draws).
"""

from __future__ import annotations

from collections import deque
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
        background: solve the plans on worker threads (else on demand, same result).
        depth: batches in flight, and worker threads (``>= 1``).
    """

    def __init__(self, data, pair_fn: PairFn, batch_size: int, generator: torch.Generator,
                 background: bool = True, depth: int = 1):
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self.data, self.pair_fn, self.batch_size = data, pair_fn, int(batch_size)
        self.generator, self.depth = generator, int(depth)
        self.pool = (ThreadPoolExecutor(self.depth, thread_name_prefix="sbrun-pairs")
                     if background else None)
        # batches drawn, not yet consumed (oldest first), each with its plan's future
        self.pending: deque[tuple[tuple[Tensor, Tensor, int], Future | None]] = deque()

    def _draw(self) -> tuple[Tensor, Tensor, int]:
        x0, x1 = self.data.batch(self.batch_size, self.generator)
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        return x0, x1, seed

    def _solve(self, job: tuple[Tensor, Tensor, int]) -> tuple[Tensor, Tensor]:
        x0, x1, seed = job
        return self.pair_fn(x0, x1, generator=torch.Generator().manual_seed(seed))

    def _submit(self, job: tuple[Tensor, Tensor, int]) -> None:
        future = self.pool.submit(self._solve, job) if self.pool is not None else None
        self.pending.append((job, future))

    def next(self) -> tuple[Tensor, Tensor]:
        """This step's coupled pairs; keeps ``depth`` more batches in flight."""
        while len(self.pending) < self.depth:  # first call (or a shallower checkpoint)
            self._submit(self._draw())
        job, future = self.pending.popleft()
        self._submit(self._draw())  # before waiting: the workers stay busy
        return future.result() if future is not None else self._solve(job)

    def state_dict(self) -> dict:
        """The batches drawn for the next steps (CPU tensors, oldest first), with seeds."""
        return {"pending": [(x0.cpu(), x1.cpu(), seed) for (x0, x1, seed), _ in self.pending]}

    def load_state_dict(self, state: dict) -> None:
        pending = state.get("pending") or []
        if pending and isinstance(pending[0], Tensor):  # a checkpoint of one batch in flight
            pending = [pending]
        for x0, x1, seed in pending:
            self._submit((x0.cpu(), x1.cpu(), int(seed)))

    def close(self) -> None:
        """Wait for the workers (pending plans are dropped) and stop them."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        self.pending.clear()
