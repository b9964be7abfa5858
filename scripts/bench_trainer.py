"""Overhead of sbrun's shared trainer over a minimal hand-written PyTorch loop.

Both loops train the same MLP with the same flow-matching loss, batch size and
optimiser on the same data sampler; the hand loop has no EMA, no grad clipping, no
progress bar, no checkpoints. Reported: steps/s of each and the overhead ratio,
measured in one process, interleaved over several repeats (median).

    python scripts/bench_trainer.py [--steps 1000] [--batch 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from sbrun.config import TrainerConfig
from sbrun.data.problems import toy
from sbrun.methods.base import Phase
from sbrun.methods.flow_matching import FlowMatching
from sbrun.models import MLP
from sbrun.pipeline.data import BatchSource
from sbrun.pipeline.trainer import Trainer
from sbrun.sde import Brownian


def hand_loop(steps: int, batch: int, data: BatchSource, seed: int) -> float:
    torch.manual_seed(seed)
    net = MLP((2,), hidden=256, depth=3)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        x0, x1 = data.batch(batch, g)
        t = torch.rand(batch, generator=g)
        xt = (1 - t[:, None]) * x0 + t[:, None] * x1
        loss = (net(xt, t) - (x1 - x0)).pow(2).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - t0)


def sbrun_loop(steps: int, batch: int, data: BatchSource, seed: int, progress: bool) -> float:
    torch.manual_seed(seed)
    method = FlowMatching()
    method.bind(data.problem, Brownian(1.0))
    nets = torch.nn.ModuleDict({"net": MLP((2,), hidden=256, depth=3)})
    cfg = TrainerConfig(steps=steps, batch_size=batch, lr=1e-3, checkpoint_every=0,
                        progress=False, ema=0.999, grad_clip=1.0)
    with tempfile.TemporaryDirectory() as d:
        tr = Trainer(cfg, method, nets, data, d, torch.device("cpu"), seed)
        phase = Phase("train", steps)
        t0 = time.perf_counter()
        for _ in range(steps):
            tr.train_step(phase)
        return steps / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    data = BatchSource(toy("moons", "gaussian"))
    hand, ours = [], []
    for r in range(a.repeats):
        hand.append(hand_loop(a.steps, a.batch, data, r))
        ours.append(sbrun_loop(a.steps, a.batch, data, r, False))
    h, o = statistics.median(hand), statistics.median(ours)
    print(f"threads={torch.get_num_threads()} batch={a.batch} steps={a.steps} repeats={a.repeats}")
    print("| loop | steps/s (median) |\n|---|---|")
    print(f"| hand-written PyTorch | {h:.1f} |\n| sbrun Trainer (EMA, clip) | {o:.1f} |")
    print(f"overhead: {100 * (h / o - 1):+.1f}% (time per step, sbrun / hand - 1)")


if __name__ == "__main__":
    main()
