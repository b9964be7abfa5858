"""Prefetched couplings: the worker thread changes nothing but the time a step takes."""

from __future__ import annotations

import pytest
import torch

from sbrun.pipeline.build import build
from sbrun.pipeline.checkpoint import load_checkpoint
from sbrun.pipeline.prefetch import PairPrefetcher
from sbrun.pipeline.trainer import Trainer
from tests.conftest import compose

COUPLED = ["method=flow-matching", "data=torchcfm_gaussian2moons", "model.hidden=16", "model.depth=2",
           "trainer.batch_size=64", "trainer.steps=8", "trainer.progress=false", "logger=none",
           "trainer.checkpoint_every=0", "trainer.threads=1"]


def _train(tmp_path, overrides, interrupt_at=0, resume=None):
    cfg = compose([*COUPLED, *overrides, f"trainer.interrupt_at={interrupt_at}"])
    c = build(cfg)
    trainer = Trainer(cfg.trainer, c.method, c.nets, c.data, tmp_path, c.device, cfg.seed)
    if resume is not None:
        trainer.load_state_dict(load_checkpoint(resume))
    if interrupt_at:
        with pytest.raises(KeyboardInterrupt):
            trainer.fit()
        assert trainer.prefetcher is None  # the worker is stopped
        return tmp_path / "checkpoints" / "last.pt"
    trainer.fit()
    return torch.cat([p.detach().flatten() for p in c.nets.parameters()])


@pytest.mark.parametrize("coupling", ["exact_ot", "entropic_ot sde.sigma=0.3",
                                      "exact_ot trainer.prefetch=2"])
def test_background_plans_and_resumed_runs_train_bit_for_bit_alike(tmp_path, coupling):
    over = [f"method.coupling={coupling.split()[0]}", *coupling.split()[1:]]
    depth = 2 if "trainer.prefetch=2" in over else 1
    background = _train(tmp_path / "bg", over)
    if depth == 1:
        inline = _train(tmp_path / "inline", [*over, "trainer.prefetch=false"])
        assert torch.equal(background, inline)
    ckpt = _train(tmp_path / "cut", over, interrupt_at=3)
    state = load_checkpoint(ckpt)
    pending = state["prefetch"]["pending"]  # the batches of steps 4 .. 3 + depth
    assert len(pending) == depth
    for x0, x1, seed in pending:
        assert x0.shape == x1.shape == (64, 2) and isinstance(seed, int)
    resumed = _train(tmp_path / "cut", over, resume=ckpt)
    assert torch.equal(background, resumed)
    # not a check that cannot fail: another seed trains other parameters
    assert not torch.equal(background, _train(tmp_path / "seed", [*over, "seed=1"]))


def test_prefetcher_pairs_come_from_the_coupling_of_each_drawn_batch():
    class Data:
        def __init__(self):
            self.k = 0

        def batch(self, n, generator):
            self.k += 1
            return torch.full((n, 1), float(self.k)), torch.rand(n, 1, generator=generator)

    seen = []

    def pair_fn(x0, x1, generator):
        seen.append(float(x0[0, 0]))
        return x0, x1.flip(0)

    pf = PairPrefetcher(Data(), pair_fn, 4, torch.Generator().manual_seed(0))
    try:
        first = pf.next()
        second = pf.next()
    finally:
        pf.close()
    assert float(first[0][0, 0]) == 1.0 and float(second[0][0, 0]) == 2.0
    assert seen[:2] == [1.0, 2.0]  # batch 3 may still be in flight or done; never before 2
    assert not pf.pending and pf.pool is None


def test_deeper_prefetch_solves_the_same_plans_on_workers_as_on_demand():
    """Depth 3: three batches in flight on three workers give the pairs that solving each
    plan when its step asks for it gives, in the same order."""
    class Data:
        def batch(self, n, generator):
            return torch.randn(n, 2, generator=generator), torch.randn(n, 2, generator=generator)

    def pair_fn(x0, x1, generator):
        return x0, x1[torch.randperm(x1.shape[0], generator=generator)]

    runs = []
    for background in (True, False):
        pf = PairPrefetcher(Data(), pair_fn, 16, torch.Generator().manual_seed(0), background, depth=3)
        try:
            runs.append([torch.cat(pf.next()) for _ in range(7)])
            assert len(pf.state_dict()["pending"]) == 3
        finally:
            pf.close()
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))
    assert not torch.equal(runs[0][0], runs[0][1])


class NormalData:
    def batch(self, n, generator):
        return torch.randn(n, 2, generator=generator), torch.randn(n, 2, generator=generator)


def shuffle_pairs(x0, x1, generator):  # module level: picklable, so a process can run it
    return x0, x1[torch.randperm(x1.shape[0], generator=generator)]


def test_worker_processes_send_back_the_pairs_solved_on_demand():
    """``processes=True`` forks workers (the default on CPU); each batch's pairs come back
    bit for bit as the main thread would solve them. A pair_fn that cannot be pickled
    (a closure) keeps threads, with the same pairs."""
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    def closure(x0, x1, generator):
        return shuffle_pairs(x0, x1, generator)

    runs = {}
    for name, fn, kw in (("inline", shuffle_pairs, {"background": False}),
                         ("processes", shuffle_pairs, {"processes": True}),
                         ("closure", closure, {"processes": True})):
        pf = PairPrefetcher(NormalData(), fn, 16, torch.Generator().manual_seed(0), depth=2, **kw)
        try:
            if name == "processes":
                assert pf.processes and isinstance(pf.pool, ProcessPoolExecutor)
            if name == "closure":
                assert not pf.processes and isinstance(pf.pool, ThreadPoolExecutor)
            runs[name] = [torch.cat(pf.next()) for _ in range(5)]
        finally:
            pf.close()
    for name in ("processes", "closure"):
        assert all(torch.equal(a, b) for a, b in zip(runs["inline"], runs[name], strict=True))
    assert not torch.equal(runs["inline"][0], runs["inline"][1])


def test_a_checkpoint_of_one_pending_batch_still_loads():
    """Checkpoints written before depths existed hold one ``[x0, x1, seed]``."""
    pf = PairPrefetcher(None, lambda x0, x1, generator: (x0, x1), 4, torch.Generator(), False)
    x0, x1 = torch.zeros(4, 2), torch.ones(4, 2)
    pf.load_state_dict({"pending": [x0, x1, 5]})
    ((job, _),) = pf.pending
    assert torch.equal(job[0], x0) and job[2] == 5


def test_a_bad_prefetch_depth_is_refused():
    from hydra.errors import ConfigCompositionException
    from omegaconf import OmegaConf

    from sbrun.errors import ConfigError
    from sbrun.pipeline.optim import check_trainer_config

    with pytest.raises(ConfigCompositionException):
        compose([*COUPLED, "trainer.prefetch=abc"])
    cfg = compose([*COUPLED, "trainer.prefetch=-1"])
    with pytest.raises(ConfigError, match="trainer.prefetch"):
        check_trainer_config(OmegaConf.to_object(cfg.trainer))
