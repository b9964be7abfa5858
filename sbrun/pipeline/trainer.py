"""The shared trainer: batch -> method.loss -> step -> EMA, over the method's phases.

It never branches on a method's name. State saved in checkpoints: networks, EMA,
optimisers, global step, phase and step within it, and every RNG, so a resumed run
continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from sbrun.config import TrainerConfig
from sbrun.errors import ConfigError, TrainingError
from sbrun.methods.base import Batch, Method, Phase
from sbrun.methods.guidance import train_nets
from sbrun.pipeline.checkpoint import LAST, PREV, load_weights, plain, save_checkpoint
from sbrun.pipeline.data import BatchSource
from sbrun.pipeline.distributed import DistInfo, wrap
from sbrun.pipeline.optim import PRECISIONS, autocast, check_trainer_config, lr_at, make_optimizer
from sbrun.pipeline.prefetch import PairPrefetcher

log = logging.getLogger(__name__)


class Trainer:
    """Runs every phase of ``method`` on ``nets``; evaluation is a callback.

    Args:
        evaluate: ``evaluate(ema_nets, step, phase) -> dict`` called every
            ``cfg.eval_every`` steps and at the end of each phase.
    """

    def __init__(self, cfg: TrainerConfig, method: Method, nets: nn.ModuleDict,
                 data: BatchSource, run_dir: Path, device: torch.device, seed: int,
                 evaluate: Callable | None = None, progress=None, dist: DistInfo | None = None):
        # a plain dataclass: an OmegaConf attribute read costs ~50 us, several per step
        if OmegaConf.is_config(cfg):  # (merged into the schema: an untyped one too)
            cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainerConfig), cfg))
        check_trainer_config(cfg)
        self.cfg, self.method, self.nets, self.data = cfg, method, nets, data
        self.device, self.run_dir, self.evaluate = device, Path(run_dir), evaluate
        self.dist = dist or DistInfo()
        if cfg.channels_last:
            nets.to(memory_format=torch.channels_last)
        self._ema = copy.deepcopy(nets).requires_grad_(False)
        self._ema_stale: set[str] = set()  # ema = 0: copied from the weights when read
        self.opts = {k: make_optimizer(cfg, nets[k].parameters(), device) for k in nets}
        self.phases = method.phases(cfg.steps)
        # each rank draws its own batches; rank 0 matches a single-process run
        self.generator = torch.Generator().manual_seed(seed + 1_000_003 * self.dist.rank)
        self.train_nets = wrap(nets, self.dist, device)
        if cfg.compile:
            self.train_nets = nn.ModuleDict({k: torch.compile(m)
                                             for k, m in self.train_nets.items()})
        self._ema_pairs = {
            k: ([q.data for q in self._ema[k].parameters()], [q.data for q in nets[k].parameters()],
                list(self._ema[k].buffers()), list(nets[k].buffers()))
            for k in nets
        }
        self._params = {k: list(nets[k].parameters()) for k in nets}
        self.amp_dtype = PRECISIONS[cfg.precision]
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
        self.step = 0  # global step over all phases
        self.phase_idx = 0
        self.phase_step = 0
        self.progress = progress
        self.history: list[dict] = []
        self.train_time = 0.0
        # last.pt's weights have not yet given a checked loss (prev.pt is kept until then)
        self._unverified = (self.run_dir / "checkpoints" / PREV).exists()
        self.prefetcher: PairPrefetcher | None = None  # coupled batches of this phase
        self._prefetch_state: dict | None = None  # a checkpoint's, until its phase starts

    # -- checkpoints -------------------------------------------------------------
    def state_dict(self) -> dict:
        """Tensors, numbers, strings and plain containers only (``weights_only`` loads it)."""
        state = {
            "nets": self.nets.state_dict(), "ema": self.ema.state_dict(),
            "opts": {k: o.state_dict() for k, o in self.opts.items()},
            "step": self.step, "phase_idx": self.phase_idx, "phase_step": self.phase_step,
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "history": plain(self.history), "train_time": float(self.train_time),
            "scaler": plain(self.scaler.state_dict()),
            "prefetch": plain(self.prefetcher.state_dict()) if self.prefetcher is not None else None,
        }
        state["method"] = self.method.state_dict()  # e.g. eot's static plan
        return state

    def load_state_dict(self, state: dict, path: str | Path = "checkpoint") -> None:
        load_weights(self.nets, state["nets"], path)
        self._ema_stale.clear()
        load_weights(self._ema, state["ema"], path)
        try:
            for k, o in self.opts.items():
                o.load_state_dict(state["opts"][k])
        except (KeyError, ValueError) as e:
            raise ConfigError(f"checkpoint {path}: optimiser state does not fit this run "
                              f"({type(e).__name__}: {e})") from None
        if "method" in state:
            self.method.load_state_dict(state["method"])
        self.step, self.phase_idx = state["step"], state["phase_idx"]
        self.phase_step = state["phase_step"]
        self.generator.set_state(state["generator"])
        if self.dist.rank:  # replicas must not replay rank 0's batches
            self.generator.manual_seed(1_000_003 * self.dist.rank + self.step)
        torch.set_rng_state(state["torch_rng"])
        self.history = state.get("history", [])
        self.train_time = state.get("train_time", 0.0)
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self._prefetch_state = state.get("prefetch")

    def save(self) -> Path:
        """Write ``last.pt``; the previous one stays as ``prev.pt`` until these weights have
        given a finite loss (see :meth:`_non_finite`)."""
        path = self.run_dir / "checkpoints" / LAST
        if self.dist.is_main:
            save_checkpoint(self.state_dict(), path, keep_previous=not self._unverified)
            self._unverified = True
        return path

    def _verified(self) -> None:
        """The weights in ``last.pt`` gave a finite loss: ``prev.pt`` is no longer needed."""
        self._unverified = False
        if self.dist.is_main:
            (self.run_dir / "checkpoints" / PREV).unlink(missing_ok=True)

    # -- one step ---------------------------------------------------------------
    @property
    def ema(self) -> nn.ModuleDict:
        """The EMA networks (with ``ema = 0``: a copy of the weights, taken when read)."""
        for k in self._ema_stale:
            ema_p, p, ema_b, b = self._ema_pairs[k]
            torch._foreach_copy_(ema_p, p)
            if ema_b:
                torch._foreach_copy_(ema_b, b)
        self._ema_stale.clear()
        return self._ema

    def _ema_update(self, names: tuple[str, ...]) -> None:
        """``ema <- ema + (1 - decay) (params - ema)`` for the networks just trained
        (``decay = 0``: the copy is deferred to the next read of :attr:`ema`)."""
        if self.cfg.ema == 0:
            self._ema_stale.update(names)
            return
        for k in names:
            ema_p, p, ema_b, b = self._ema_pairs[k]
            torch._foreach_lerp_(ema_p, p, 1.0 - self.cfg.ema)
            if ema_b:
                torch._foreach_copy_(ema_b, b)

    def start_prefetch(self, phase: Phase) -> None:
        """Coupled batches for ``phase`` when the method re-pairs them (``Method.pair_fn``)."""
        self.stop_prefetch()
        pair_fn = self.method.pair_fn(phase)
        if pair_fn is not None:
            depth = int(self.cfg.prefetch)  # false: one batch ahead, solved on demand
            # CPU: worker processes (an entropic solver's Python lines wait for the GIL on threads)
            self.prefetcher = PairPrefetcher(self.data, pair_fn, self.cfg.batch_size, self.generator,
                                             background=depth > 0, depth=max(depth, 1),
                                             processes=self.device.type == "cpu")
            if self._prefetch_state is not None:
                self.prefetcher.load_state_dict(self._prefetch_state)
        self._prefetch_state = None

    def stop_prefetch(self) -> None:
        if self.prefetcher is not None:
            self.prefetcher.close()
            self.prefetcher = None

    def train_step(self, phase: Phase) -> dict:
        if self.prefetcher is not None:  # pairs coupled on the worker during the last step
            (x0, x1), y = self.prefetcher.next(), []
        else:
            x0, x1, *y = self.data.batch(self.cfg.batch_size, self.generator)  # y: labels
        batch = Batch(x0.to(self.device), x1.to(self.device), self.generator,
                      coupled=self.prefetcher is not None,
                      y=y[0].to(self.device) if y else None)
        nets = train_nets(self.method, self.train_nets, batch)  # labels bound when conditional
        with autocast(self.device, self.amp_dtype):
            out = self.method.loss(nets, batch, phase)
        # the finiteness check syncs a GPU: every step on CPU, every 10th on CUDA, and
        # always on the first step after a checkpoint (which is kept only if it passes)
        if self.device.type == "cpu" or self.step % 10 == 0 or self._unverified:
            if not math.isfinite(out.loss.item()):
                self._non_finite(out.loss, phase)
            if self._unverified:
                self._verified()
        lr = lr_at(self.cfg, self.phase_step, phase.steps)
        opts = [self.opts[k] for k in phase.trainable]
        for o in opts:
            for g in o.param_groups:
                g["lr"] = lr
            o.zero_grad(set_to_none=True)
        scaled = self.scaler.is_enabled()  # fp16 only: otherwise plain backward and steps
        (self.scaler.scale(out.loss) if scaled else out.loss).backward()
        if self.cfg.grad_clip > 0:
            for o in opts if scaled else ():
                self.scaler.unscale_(o)
            params = [p for k in phase.trainable for p in self._params[k]]
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip, foreach=True)
        for o in opts:
            if scaled:
                self.scaler.step(o)
            else:
                o.step()
        if scaled:
            self.scaler.update()
        self._ema_update(phase.trainable)
        return out.stats

    def _non_finite(self, loss, phase: Phase) -> None:
        """Stop with a clear error. ``last.pt`` is the last checkpoint whose weights gave a
        finite loss: one written since the last check is replaced by ``prev.pt``."""
        ckpt = self.run_dir / "checkpoints"
        path, where = ckpt / LAST, "no checkpoint was written yet"
        if self.dist.is_main and self._unverified and path.exists():
            # these very weights gave the non-finite loss: never resume from them
            if (ckpt / PREV).exists():
                os.replace(ckpt / PREV, path)
            else:
                os.replace(path, ckpt / "diverged.pt")
                where = f"the only checkpoint diverged (kept as {ckpt / 'diverged.pt'})"
        if path.exists():
            step = torch.load(path, map_location="cpu", weights_only=True)["step"]
            where = f"last good checkpoint: {path} (step {step}); resume=true continues from it"
        raise TrainingError(f"non-finite loss ({float(loss.detach())}) at step {self.step} in phase "
                            f"'{phase.name}'; {where} (lower trainer.lr?)")

    # -- loop --------------------------------------------------------------------
    def _evaluate(self, phase: Phase, end_of_phase: bool) -> None:
        if self.evaluate is None or not self.dist.is_main or (end_of_phase and not phase.evaluate):
            return
        label = phase.step_label if (end_of_phase and phase.step_label is not None) else self.step
        metrics = self.evaluate(self.ema, label, phase)
        self.history.append({"step": label, "phase": phase.name, **metrics})

    def fit(self) -> list[dict]:
        """Train through the remaining phases; returns the evaluation history."""
        total = sum(p.steps for p in self.phases)
        task = None
        if self.progress is not None:
            task = self.progress.add_task("train", total=total, completed=self.step,
                                          loss=float("nan"))
        resumed = self.phase_step > 0  # resumed inside a phase: the hook rebuilds method state
        while self.phase_idx < len(self.phases):
            phase = self.phases[self.phase_idx]
            if self.phase_step == 0 or resumed:
                ctx = {"generator": self.generator, "device": self.device, "data": self.data,
                       "phase_step": self.phase_step}
                self.method.begin_phase(phase, self.ema, ctx)
                resumed = False
            self.start_prefetch(phase)
            self.nets.train()
            t0 = time.perf_counter()
            while self.phase_step < phase.steps:
                try:
                    stats = self.train_step(phase)
                except BaseException:
                    self.stop_prefetch()
                    raise
                self.step += 1
                self.phase_step += 1
                if task is not None:  # reading the loss syncs a GPU: refresh every 10 steps
                    fields = {}
                    if self.phase_step % 10 == 0 or self.phase_step == phase.steps:
                        fields["loss"] = float(stats.get("loss", float("nan")))
                    self.progress.update(task, advance=1, description=phase.name, **fields)
                if (self.cfg.eval_every and self.phase_step % self.cfg.eval_every == 0
                        and self.phase_step < phase.steps):
                    self._evaluate(phase, end_of_phase=False)
                interrupt = self.cfg.interrupt_at and self.step >= self.cfg.interrupt_at
                if interrupt or (self.cfg.checkpoint_every
                                 and self.step % self.cfg.checkpoint_every == 0):
                    self.train_time += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    self.save()
                if interrupt:
                    self.stop_prefetch()
                    raise KeyboardInterrupt(f"trainer.interrupt_at={self.cfg.interrupt_at}")
            self.stop_prefetch()  # the batch drawn for a step past the phase is dropped
            self.train_time += time.perf_counter() - t0
            self._evaluate(phase, end_of_phase=True)
            self.phase_idx += 1
            self.phase_step = 0
            self.save()
        if not self.phases:  # a training-free method: its checkpoint holds the method state
            self.save()
        if all(bool(torch.isfinite(p).all()) for p in self.nets.parameters()):
            self._verified()  # a finished run keeps one checkpoint: its final weights
        return self.history
