"""One run: build -> train -> sample -> evaluate -> log -> save (the output contract)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from sbrun.loggers import ConsoleLogger, JsonlLogger, MultiLogger, WandbLogger
from sbrun.methods.base import Phase
from sbrun.pipeline.build import Components, build
from sbrun.pipeline.checkpoint import load_checkpoint, resolve_resume
from sbrun.pipeline.distributed import broadcast_object, cleanup, setup
from sbrun.pipeline.evaluator import Evaluation, Evaluator
from sbrun.pipeline.trainer import Trainer
from sbrun.solvers.base import time_grid

log = logging.getLogger(__name__)


def make_progress(enabled: bool) -> Progress | None:
    if not enabled:
        return None
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4g}"), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), console=Console(stderr=True), transient=False,
    )


def make_logger(cfg: DictConfig, run_dir: Path, resumed: bool, group: str | None = None,
                tags: tuple[str, ...] = ()) -> MultiLogger:
    """JSONL + W&B + console. In a sweep, W&B groups the jobs and tags them by overrides."""
    lc = cfg.logger
    wandb = WandbLogger(
        run_dir, OmegaConf.to_container(cfg, resolve=True), mode=lc.mode, project=lc.project,
        entity=lc.entity, group=lc.group or group, tags=[*lc.tags, *tags][:64],
        name=lc.name or cfg.name, log_figures=lc.log_figures,
    )
    return MultiLogger([JsonlLogger(run_dir, append=resumed), wandb, ConsoleLogger()])


def save_samples(ev: Evaluation, path: Path) -> None:
    """``samples.npz``: ``x0``, ``x1`` (x0 moved to t=1), ``target``, ``path``, ``t``."""
    arrays = {
        "x0": ev.x0.cpu().numpy(), "x1": ev.result.x.cpu().numpy(),
        "target": ev.target.cpu().numpy(), "t": ev.result.t.cpu().numpy(),
    }
    if ev.result.path is not None:
        paths, t = ev.result.path, ev.result.t
        if paths.dim() > 3:  # images: at most 8 paths at 11 times (a 64x64x3 path set is GBs)
            idx = torch.linspace(0, paths.shape[1] - 1, min(11, paths.shape[1])).round().long()
            paths, t = paths[:8, idx], t[idx]
            arrays["t"] = t.cpu().numpy()
        arrays["path"] = paths.cpu().numpy()
    if ev.backward is not None:
        arrays["x0_backward"] = ev.backward.x.cpu().numpy()
    if ev.labels is not None:  # class-conditional runs: the class of each generated sample
        arrays["y"] = ev.labels.cpu().numpy()
    np.savez(path, **arrays)


def make_figures(ev: Evaluation, history: list[dict], title: str) -> dict:
    """The run's figures as ``{name: Figure}`` (2D scatter and trajectories, curves)."""
    from sbrun.plots import metric_curves, samples_2d, trajectories_2d

    figs = {}
    if ev.x0.dim() == 4:  # images: a grid of samples and source / generated / target rows
        from sbrun.plots.images import image_grid, image_rows

        figs["samples"] = image_grid(ev.result.x[:64], nrow=8, title=title)
        figs["transport"] = image_rows({"source (t=0)": ev.x0, "generated (t=1)": ev.result.x,
                                        "target (held-out)": ev.target}, n=8, title=title)
    if ev.x0.shape[1:] == (2,):
        figs["samples"] = samples_2d(ev.x0, ev.target, ev.result.x, title)
        if ev.result.path is not None:
            from sbrun.plots.marginals import marginals_2d

            figs["trajectories"] = trajectories_2d(ev.result.path, ev.x0, ev.target, title)
            figs["marginals"] = marginals_2d(ev.result.path, ev.result.t,
                                             times=(0.0, 0.25, 0.4, 0.6, 0.75, 1.0),
                                             source=ev.x0, target=ev.target, title=title)
    if len(history) > 1:
        ipf = any("ipf_iter" in h for h in history)  # DSB logs one evaluation per IPF iteration
        keys = ("w2", "kl", *sorted({k for h in history for k in h
                                     if k.startswith("fid_") and not k.endswith(("_accuracy", "_seconds"))
                                     and isinstance(h[k], float)}))
        figs["metrics"] = metric_curves(history, keys=keys, title=title,
                                        xlabel="IPF iteration" if ipf else "training step")
    from sbrun.plots.conditional import conditional_figures

    figs.update(conditional_figures(ev, title))
    return figs


def save_figures(figs: dict, fig_dir: Path, logger, step: int) -> None:
    """Write ``figures/<name>.png`` and log them; a plotting failure never ends a run."""
    import matplotlib.pyplot as plt

    fig_dir.mkdir(exist_ok=True)
    for name, fig in figs.items():
        try:
            fig.savefig(fig_dir / f"{name}.png", dpi=110)
            logger.log_figure(name, fig, step)
        except Exception as e:  # noqa: BLE001
            log.warning("figure %s not saved: %s", name, e)
        finally:
            plt.close(fig)


def run_title(cfg: DictConfig, c: Components) -> str:
    """Figure titles say the method, sigma and the number of steps (like the slides)."""
    parts = [c.method.name, c.problem.name]
    sigma = c.sde.sigma if c.method.uses_reference else None
    if sigma is not None:
        parts.append(f"σ={sigma:g}")
    parts.append(c.method.sampler_label or f"{cfg.solver.name} × {cfg.solver.steps}")
    train_steps = sum(p.steps for p in c.method.phases(cfg.trainer.steps))
    if train_steps:
        parts.append(f"{train_steps} train steps")
    return ", ".join(parts)


def preflight(c: Components, nets, grid) -> None:
    """Move two points with the untrained networks through the run's sampler, each way
    the method is evaluated, so that a solver the method cannot use (an unknown
    ``solver.scheme``, an ODE solver for a method that samples an SDE, ...) fails before
    the first training step. The global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        for direction, dist in (("forward", c.data.source), ("backward", c.data.target)):
            if direction not in c.method.directions:
                continue
            x = dist.sample(2, torch.Generator().manual_seed(0)).to(c.device)
            c.method.transport(nets, x, c.solver, grid, direction=direction,
                               generator=torch.Generator().manual_seed(0), keep=None)


class EvalHook:
    """The trainer's ``evaluate`` callback: evaluate, log, and (``eval.figures_each_eval``)
    write the figures of each evaluation. ``trainer`` and ``logger`` are set by :func:`run`
    (the logger only once every option has been checked)."""

    def __init__(self, cfg: DictConfig, evaluator: Evaluator, title: str, run_dir: Path):
        self.cfg, self.evaluator, self.title, self.run_dir = cfg, evaluator, title, run_dir
        self.trainer: Trainer | None = None
        self.logger: MultiLogger | None = None

    def __call__(self, nets, step: int, phase: Phase) -> dict:
        t = self.trainer
        last = len(t.phases) - 1  # the end of the last phase, or a finished run
        final = t.phase_idx > last or (t.phase_idx == last and t.phase_step >= phase.steps)
        metrics = self.evaluator(nets, step, phase, final=final)
        self.logger.log_metrics({"phase": phase.name, **metrics}, step)
        if self.cfg.eval.figures and self.cfg.eval.figures_each_eval:
            figs = make_figures(self.evaluator.last, [],  # the plan's total, then how far it got
                                f"{self.title} — {phase.name}, after {t.step} steps")
            save_figures({f"eval_{step:06d}_{k}": f for k, f in figs.items()},
                         self.run_dir / "figures", self.logger, step)
        return metrics

    def final(self, finished_before: bool) -> Evaluation:
        """The last evaluation; made here for a training-free method or a finished run
        resumed (whose final row is in ``metrics.jsonl`` already: not logged twice)."""
        t = self.trainer
        if self.evaluator.last is None:
            last_phase = t.phases[-1] if t.phases else Phase("final", 0)
            if finished_before:
                self.evaluator(t.ema, t.step, last_phase, final=True)
            else:
                self(t.ema, t.step, last_phase)
        extra = self.evaluator.final_fid()  # e.g. Inception FID once, at the end
        if extra:
            self.logger.log_metrics(extra, t.step)
        return self.evaluator.last


def train_replica(cfg: DictConfig, c: Components, run_dir: Path, dist, state, ckpt) -> dict:
    """A DDP replica (rank > 0): trains only; rank 0 evaluates, logs and writes files."""
    try:
        trainer = Trainer(cfg.trainer, c.method, c.nets, c.data, run_dir, c.device, cfg.seed,
                          dist=dist)
        if state is not None:
            trainer.load_state_dict(state, ckpt)
        trainer.fit()
    finally:
        cleanup(dist)
    return {}


def write_outputs(cfg: DictConfig, c: Components, trainer: Trainer, ev: Evaluation,
                  history: list[dict], final: dict, logger: MultiLogger, run_dir: Path) -> None:
    """``samples.npz``, the summary and ``figures/`` (a method's own figures included)."""
    save_samples(ev, run_dir / "samples.npz")
    logger.log_summary(final)
    if not cfg.eval.figures:
        return
    figs = make_figures(ev, history, run_title(cfg, c))
    try:
        figs.update(c.method.figures(trainer.ema, ev))
    except Exception as e:  # noqa: BLE001 - a plot never costs the run
        log.warning("method figures failed: %s", e)
    save_figures(figs, run_dir / "figures", logger, trainer.step)


def run(cfg: DictConfig, run_dir: str | Path, group: str | None = None,
        tags: tuple[str, ...] = (), on_ready: Callable[[], None] | None = None) -> dict:
    """Execute one run in ``run_dir`` and return its final metrics.

    Every option is checked (build, evaluator, trainer, a two-point preflight of the
    sampler, the checkpoint to resume) before anything is written to ``run_dir``;
    ``on_ready()`` is called then (the CLI writes the run's ``.hydra/`` config there).
    ``group``/``tags``: W&B grouping of a sweep's jobs (set by the CLI in a multirun).
    """
    t_start = time.perf_counter()
    if cfg.trainer.threads > 0:
        torch.set_num_threads(cfg.trainer.threads)
    c = build(cfg)
    dist, c.device = setup(c.device)
    c.nets.to(c.device)
    run_dir = Path(broadcast_object(str(run_dir), dist))
    ckpt = resolve_resume(cfg.resume, run_dir)
    state = load_checkpoint(ckpt, map_location=c.device) if ckpt is not None else None
    if not dist.is_main:
        return train_replica(cfg, c, run_dir, dist, state, ckpt)
    evaluator = Evaluator(cfg.eval, c.method, c.data, c.solver, cfg.solver.steps, c.device, cfg.seed,
                          scorer=c.scorer)
    hook = EvalHook(cfg, evaluator, run_title(cfg, c), run_dir)
    try:
        progress = make_progress(cfg.trainer.progress)
        trainer = hook.trainer = Trainer(cfg.trainer, c.method, c.nets, c.data, run_dir, c.device,
                                         cfg.seed, evaluate=hook, progress=progress, dist=dist)
        if state is not None:
            trainer.load_state_dict(state, ckpt)
            log.info("resumed from %s at step %d", ckpt, trainer.step)
        finished_before = state is not None and trainer.phase_idx >= len(trainer.phases)
        preflight(c, trainer.ema, time_grid(cfg.solver.steps))
        # -- everything is valid: from here on the run directory is written ----------
        if on_ready is not None:
            on_ready()
        hook.logger = make_logger(cfg, run_dir, resumed=ckpt is not None, group=group, tags=tuple(tags))
        with progress if progress is not None else contextlib.nullcontext():
            history = trainer.fit()
        ev = hook.final(finished_before)
        final = dict(ev.metrics)
        final.update(
            wall_seconds=time.perf_counter() - t_start, train_seconds=trainer.train_time,
            steps=trainer.step, n_params=sum(p.numel() for p in c.nets.parameters()),
        )
        write_outputs(cfg, c, trainer, ev, history, final, hook.logger, run_dir)
    finally:
        if hook.logger is not None:
            hook.logger.finish()
        cleanup(dist)
    return final
