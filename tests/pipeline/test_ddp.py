"""DDP through torch.distributed on CPU (gloo): two replicas stay in sync."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from sbrun.config import TrainerConfig
    from sbrun.data.problems import toy
    from sbrun.methods.base import Phase
    from sbrun.methods.flow_matching import FlowMatching
    from sbrun.models import MLP
    from sbrun.pipeline.data import BatchSource
    from sbrun.pipeline.distributed import cleanup, setup
    from sbrun.pipeline.trainer import Trainer
    from sbrun.sde import Brownian

    info, device = setup(torch.device("cpu"))
    torch.manual_seed(0)  # same initial weights on both ranks (DDP also broadcasts them)
    data = BatchSource(toy("moons", "gaussian"))
    method = FlowMatching()
    method.bind(data.problem, Brownian(1.0))
    nets = torch.nn.ModuleDict({"net": MLP((2,), hidden=16, depth=2)})
    cfg = TrainerConfig(steps=5, batch_size=32, checkpoint_every=0, progress=False)
    tr = Trainer(cfg, method, nets, data, out_dir, device, seed=0, dist=info)
    x0, _ = data.batch(4, torch.Generator().manual_seed(0 + 1_000_003 * rank))
    for _ in range(5):
        tr.train_step(Phase("train", 5))
    flat = torch.cat([p.detach().flatten() for p in nets.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    batches = [torch.zeros_like(x0) for _ in range(world)]
    dist.all_gather(batches, x0)
    if rank == 0:
        torch.save({"params": gathered, "batches": batches}, os.path.join(out_dir, "ddp.pt"))
    cleanup(info)


def test_two_cpu_replicas_stay_in_sync(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    out = torch.load(tmp_path / "ddp.pt")
    a, b = out["params"]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(*out["batches"]), "ranks must draw different batches"
