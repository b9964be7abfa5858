"""Image training throughput of sbrun's trainer on one GPU (or CPU): precision × compile.

Flow matching on MNIST-shaped (1×28×28) or CIFAR/CelebA-32-shaped (3×32×32) random images
with the UNet, through ``sbrun.pipeline.trainer.Trainer`` (EMA, grad clipping included).
Throughput does not depend on image content, so no dataset is needed. Prints a markdown
table of images/s and ms/step, measured in one process.

    python scripts/bench_gpu.py --device cuda --shape 1,28,28 --batch 256 --steps 100
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from sbrun.config import TrainerConfig
from sbrun.data.distributions import Empirical, Problem, StandardGaussian
from sbrun.methods.base import Phase
from sbrun.methods.flow_matching import FlowMatching
from sbrun.models import UNet
from sbrun.pipeline.data import BatchSource
from sbrun.pipeline.trainer import Trainer
from sbrun.sde import Brownian

UNETS = {
    "small": {"hidden": 32, "depth": 1, "channel_mult": (1, 2, 2)},
    "medium": {"hidden": 64, "depth": 2, "channel_mult": (1, 2, 2)},
    "cifar": {"hidden": 128, "depth": 2, "channel_mult": (1, 2, 2, 2), "attention": (2,)},
}


def measure(shape, unet: str, batch: int, steps: int, device: str, precision: str,
            compile_: bool, channels_last: bool) -> tuple[float, int]:
    torch.manual_seed(0)
    imgs = torch.rand(4096, *shape) * 2 - 1
    problem = Problem("bench", Empirical(imgs, imgs[:64]), StandardGaussian(shape))
    method = FlowMatching()
    method.bind(problem, Brownian(1.0))
    net = UNet(shape, **UNETS[unet]).to(device)
    nets = torch.nn.ModuleDict({"net": net})
    cfg = TrainerConfig(steps=steps, batch_size=batch, precision=precision, compile=compile_,
                        channels_last=channels_last, checkpoint_every=0, progress=False)
    with tempfile.TemporaryDirectory() as d:
        tr = Trainer(cfg, method, nets, BatchSource(problem), d, torch.device(device), 0)
        phase = Phase("train", steps)
        for _ in range(15 if compile_ else 5):  # warm-up (and compilation)
            tr.train_step(phase)
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            tr.train_step(phase)
        sync()
        dt = (time.perf_counter() - t0) / steps
    return dt, sum(p.numel() for p in net.parameters())


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--shape", default="1,28,28")
    p.add_argument("--unet", default="small", choices=list(UNETS))
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--configs", default="fp32,bf16,fp16,bf16+compile,bf16+compile+cl")
    a = p.parse_args()
    shape = tuple(int(s) for s in a.shape.split(","))
    name = torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu"
    print(f"device={name} shape={shape} unet={a.unet} batch={a.batch} steps={a.steps} "
          f"torch={torch.__version__}")
    print("| precision | compile | channels_last | ms/step | images/s |\n|---|---|---|---|---|")
    base = None
    for conf in a.configs.split(","):
        parts = conf.split("+")
        prec, comp, cl = parts[0], "compile" in parts, "cl" in parts
        try:
            dt, n = measure(shape, a.unet, a.batch, a.steps, a.device, prec, comp, cl)
        except Exception as e:  # noqa: BLE001 - a config the platform lacks is a row, not a crash
            print(f"| {prec} | {comp} | {cl} | failed: {type(e).__name__}: {str(e)[:80]} | |")
            continue
        base = base or dt
        print(f"| {prec} | {comp} | {cl} | {1e3 * dt:.1f} | {a.batch / dt:.0f} "
              f"({base / dt:.2f}x) |", flush=True)
    print(f"UNet parameters: {n:,}")


if __name__ == "__main__":
    main()
