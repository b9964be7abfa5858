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

Threads or processes: POT's network simplex releases the GIL, but an entropic solver's
iteration is a few BLAS calls between Python lines, and on threads it waits for the GIL
that the training step holds (measured on 2 cores, batch 512, sigma = 0.1: a 9 ms plan took
15-20 ms a step on two worker threads). With ``processes=True`` the workers are forked
processes (POSIX; one torch thread each) that get each batch and send back its pairs as
NumPy arrays: the same function of the same batch and seed, so the same pairs. A
``pair_fn`` that cannot be pickled, or a platform without ``fork``, keeps threads.
"""

from __future__ import annotations

import multiprocessing
import pickle
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

import torch
from torch import Tensor

PairFn = Callable[[Tensor, Tensor, torch.Generator], tuple[Tensor, Tensor]]


def solve(pair_fn: PairFn, job: tuple[Tensor, Tensor, int]) -> tuple[Tensor, Tensor]:
    """The pairs of one drawn batch ``(x0, x1, seed)``: ``pair_fn`` with a generator of its own."""
    x0, x1, seed = job
    return pair_fn(x0, x1, generator=torch.Generator().manual_seed(seed))


_WORKER_FN: PairFn | None = None  # a worker process's pair_fn (set by _init_worker)


def _init_worker(pair_fn: PairFn) -> None:
    global _WORKER_FN
    torch.set_num_threads(1)
    _WORKER_FN = pair_fn


def _solve_in_worker(x0, x1, seed: int):
    """A worker process's job; arrays both ways (pickled by value: torch's own pickling
    would move each small tensor through a shared-memory file)."""
    out = solve(_WORKER_FN, (torch.from_numpy(x0), torch.from_numpy(x1), seed))
    return tuple(t.numpy() for t in out)


def _pool(depth: int, pair_fn: PairFn, processes: bool) -> tuple[Executor, bool]:
    """``depth`` worker processes where asked for and possible, else threads."""
    if processes and "fork" in multiprocessing.get_all_start_methods():
        try:
            pickle.dumps(pair_fn)
        except (pickle.PicklingError, AttributeError, TypeError):
            pass
        else:
            return ProcessPoolExecutor(depth, multiprocessing.get_context("fork"),
                                       initializer=_init_worker, initargs=(pair_fn,)), True
    return ThreadPoolExecutor(depth, thread_name_prefix="sbrun-pairs"), False


class PairPrefetcher:
    """Coupled ``(x0, x1)`` batches of ``batch_size`` from ``data`` under ``pair_fn``.

    Args:
        data: has ``batch(n, generator) -> (x0, x1)`` (:class:`~sbrun.pipeline.data.BatchSource`).
        pair_fn: the coupling; called with a ``torch.Generator`` seeded per batch.
        generator: the trainer's generator (main thread only).
        background: solve the plans on workers (else on demand, same result).
        depth: batches in flight, and workers (``>= 1``).
        processes: workers are processes (CPU tensors only; module docstring), not threads.
    """

    def __init__(self, data, pair_fn: PairFn, batch_size: int, generator: torch.Generator,
                 background: bool = True, depth: int = 1, processes: bool = False):
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self.data, self.pair_fn, self.batch_size = data, pair_fn, int(batch_size)
        self.generator, self.depth = generator, int(depth)
        self.pool, self.processes = _pool(self.depth, pair_fn, processes) if background else (None, False)
        # batches drawn, not yet consumed (oldest first), each with its plan's future
        self.pending: deque[tuple[tuple[Tensor, Tensor, int], Future | None]] = deque()

    def _draw(self) -> tuple[Tensor, Tensor, int]:
        x0, x1 = self.data.batch(self.batch_size, self.generator)
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        return x0, x1, seed

    def _submit(self, job: tuple[Tensor, Tensor, int]) -> None:
        if self.pool is None:
            future = None
        elif self.processes:
            future = self.pool.submit(_solve_in_worker, job[0].numpy(), job[1].numpy(), job[2])
        else:
            future = self.pool.submit(solve, self.pair_fn, job)
        self.pending.append((job, future))

    def next(self) -> tuple[Tensor, Tensor]:
        """This step's coupled pairs; keeps ``depth`` more batches in flight."""
        while len(self.pending) < self.depth:  # first call (or a shallower checkpoint)
            self._submit(self._draw())
        job, future = self.pending.popleft()
        self._submit(self._draw())  # before waiting: the workers stay busy
        if future is None:
            return solve(self.pair_fn, job)
        out = future.result()
        return tuple(torch.from_numpy(a) for a in out) if self.processes else out

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
