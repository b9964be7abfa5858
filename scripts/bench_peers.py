"""sbrun's flow matching against torchcfm's I-CFM / OT-CFM / SB-CFM, measured in one run.

Needs the optional extra ``pip install .[peers]`` (torchcfm, imported, never copied).

Tong et al.'s 2D protocol on the three tasks N(0,I)->moons, N(0,I)->8gaussians and
moons->8gaussians in torchcfm's data scaling (``data=torchcfm_*``): 3x64 SELU MLP with
t concatenated, AdamW lr 1e-3 weight decay 1e-5, batch 512, sigma 0.1, no clipping,
``--steps`` steps (10 000 by default). torchcfm's 2D runner samples with its last weights;
sbrun samples with its trainer's exponential average of them (``--ema``, decay 0.999, its
default; ``--ema 0`` runs sbrun without one, as torchcfm does). Both libraries train on the same draws'
distribution (sbrun's ``torchcfm_*`` samplers, which reproduce torchcfm's
``sample_moons`` / ``sample_8gaussians``; each side with its own generator seeded by the
seed) and are evaluated on the same points: 1000 held-out source draws moved by 100 Euler
steps of the learned field, W2 = sqrt(POT emd2) against 1000 held-out target draws, and
the floor = W2 between those and 1000 more target draws.

Couplings, torchcfm -> sbrun: I-CFM (``ConditionalFlowMatcher``) -> ``independent``;
OT-CFM (``ExactOptimalTransportConditionalFlowMatcher``) -> ``exact_ot``; SB-CFM
(``SchrodingerBridgeConditionalFlowMatcher(ot_method=--sb-ot)``, sinkhorn by default: the
entropic plan) -> ``entropic_ot``. Runs are interleaved (seed, task, then the six
trainings alternating torchcfm / sbrun), each with one torch thread; sbrun's trainer
solves the next batches' plans on ``--prefetch`` worker processes (2 by default: the
second core) while a step trains (``trainer.prefetch``; ``--no-prefetch`` turns it off).
sbrun's entropic_ot draws one bridge point per pair, as SB-CFM does
(``method.antithetic=false``). Seconds per step = training wall
time / steps (evaluation excluded). On a shared machine whole runs see different loads;
``--timing`` instead advances the six trainings of a task in shuffled round-robin blocks of
``--block`` steps and reports the median block (same load for all six). Every finished run
is appended to ``--csv`` at once; ``--table CSV`` prints the table of a (possibly partial) CSV.

    python scripts/bench_peers.py --steps 10000 --seeds 0 1 2 --csv peers.csv
    python scripts/bench_peers.py --timing --steps 400 --seeds 0 --csv timing.csv  # step times
    python scripts/bench_peers.py --table peers.csv
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's sbrun, whatever is installed
from sbrun.config import compose  # noqa: E402
from sbrun.metrics.distances import w2  # noqa: E402
from sbrun.metrics.path_energy import euler_energy  # noqa: E402

TASKS = {"N->moons": "torchcfm_gaussian2moons", "N->8gaussians": "torchcfm_gaussian28gaussians",
         "moons->8gaussians": "torchcfm_moons28gaussians"}
PAIRS = (("I-CFM", "independent"), ("OT-CFM", "exact_ot"), ("SB-CFM", "entropic_ot"))
SIGMA, BATCH, LR, WD, EVAL_N, EULER = 0.1, 512, 1e-3, 1e-5, 1000, 100
FIELDS = ["task", "lib", "coupling", "seed", "steps", "w2", "floor", "ratio", "s_per_step",
          "train_s", "prefetch", "load", "ema"]


def sbrun_cfg(task: str, coupling: str, steps: int, seed: int, prefetch: int, ema: float = 0.0):
    return compose(["+experiment=cfm_protocol_2d", f"data={TASKS[task]}", f"method.coupling={coupling}",
                    f"trainer.steps={steps}", f"seed={seed}", "trainer.threads=1", "logger=none",
                    "trainer.progress=false", "trainer.checkpoint_every=0",
                    f"trainer.prefetch={int(prefetch)}", f"trainer.ema={ema}"]
                   # bridge paths of sde.sigma, one draw per pair (torchcfm's SB-CFM)
                   + (["method.blur=0", "method.antithetic=false"] if coupling == "entropic_ot" else []))


def eval_points(data, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Held-out source draws, target draws and a second target sample (the floor)."""
    g = torch.Generator().manual_seed(10_000 + seed)
    return data.source.sample(EVAL_N, g), data.target.sample(EVAL_N, g), data.target.sample(EVAL_N, g)


class SbrunRun:
    """One sbrun training (``cfm_protocol_2d``), stepped by :meth:`steps` or :meth:`fit`."""

    def __init__(self, task: str, coupling: str, steps: int, seed: int, prefetch: int, ema: float,
                 run_dir: Path):
        from sbrun.pipeline.build import build
        from sbrun.pipeline.trainer import Trainer

        cfg = sbrun_cfg(task, coupling, steps, seed, prefetch, ema)
        self.c = c = build(cfg)
        self.trainer = Trainer(cfg.trainer, c.method, c.nets, c.data, run_dir, c.device, cfg.seed)
        self.data = c.data

    def fit(self) -> None:
        self.trainer.fit()

    def steps(self, k: int) -> None:
        """``k`` training steps as ``Trainer.fit`` takes them (prefetching included)."""
        tr = self.trainer
        phase = tr.phases[0]
        if tr.prefetcher is None:
            tr.nets.train()
            tr.start_prefetch(phase)
        for _ in range(k):
            tr.train_step(phase)

    def field(self):
        self.trainer.stop_prefetch()
        drift = self.c.method.drift(self.trainer.ema)
        return lambda t, x: drift(t, x)


class TorchcfmRun:
    """torchcfm's training loop (its matchers and MLP) on the same task."""

    def __init__(self, peer: str, seed: int, data, sb_ot: str):
        import numpy as np
        from torchcfm.conditional_flow_matching import (
            ConditionalFlowMatcher,
            ExactOptimalTransportConditionalFlowMatcher,
            SchrodingerBridgeConditionalFlowMatcher,
        )
        from torchcfm.models.models import MLP

        torch.manual_seed(seed)
        np.random.seed(seed)  # torchcfm's OT samplers draw pairs with numpy's global RNG
        self.fm = {"I-CFM": lambda: ConditionalFlowMatcher(sigma=SIGMA),
                   "OT-CFM": lambda: ExactOptimalTransportConditionalFlowMatcher(sigma=SIGMA),
                   "SB-CFM": lambda: SchrodingerBridgeConditionalFlowMatcher(
                       sigma=SIGMA, ot_method=sb_ot)}[peer]()
        self.model = MLP(dim=2, time_varying=True, w=64)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=LR, weight_decay=WD)
        self.g = torch.Generator().manual_seed(seed)
        self.data = data

    def steps(self, k: int) -> None:
        model, opt, fm = self.model, self.opt, self.fm
        for _ in range(k):
            x0, x1 = self.data.batch(BATCH, self.g)
            opt.zero_grad()
            t, xt, ut = fm.sample_location_and_conditional_flow(x0, x1)
            loss = torch.mean((model(torch.cat([xt, t[:, None]], dim=-1)) - ut) ** 2)
            loss.backward()
            opt.step()

    def field(self):
        model = self.model.eval()
        return lambda t, x: model(torch.cat([x, t[:, None]], dim=-1))


def make_run(lib: str, task: str, peer: str, coupling: str, args, seed: int, run_dir: Path, data):
    if lib.startswith("sbrun"):  # sbrun-inline: the same without the worker thread
        return SbrunRun(task, coupling, args.steps, seed, depth(args) if lib == "sbrun" else 0,
                        args.ema, run_dir)
    return TorchcfmRun(peer, seed, data, args.sb_ot)


def depth(args) -> int:
    """sbrun's ``trainer.prefetch``: batches in flight on as many workers."""
    return 0 if args.no_prefetch else args.prefetch


def load() -> float:
    return os.getloadavg()[0]


def evaluate(run, data, seed: int) -> tuple[float, float]:
    x0, y, y2 = eval_points(data, seed)
    x1 = euler_energy(run.field(), x0, EULER)[0]  # the same Euler steps for both libraries
    return w2(x1, y, max_points=None), w2(y2, y, max_points=None)


def run(args) -> None:
    """Per seed and task: the six trainings, full (:func:`full_task`) or side by side
    (:func:`timing_task`); every finished run is appended to the CSV at once."""
    new = not args.csv.exists()
    with args.csv.open("a", newline="") as fh, tempfile.TemporaryDirectory() as tmp:
        out = csv.DictWriter(fh, fieldnames=FIELDS)
        if new:
            out.writeheader()
        for seed in args.seeds:
            for task in args.tasks:
                data = _data(task)
                runs = {(lib, peer, coupling): partial(make_run, lib, task, peer, coupling, args, seed,
                                                       Path(tmp) / f"{lib}{coupling}", data)
                        for peer, coupling in PAIRS if coupling in args.couplings
                        for lib in libs(args, coupling)}
                times = (timing_task if args.timing else full_task)(runs, args, seed)
                for (lib, peer, coupling), (r, train_s) in times.items():
                    dist, floor = evaluate(r, data, seed)
                    sb = lib.startswith("sbrun")
                    _write(out, fh, task, lib, peer, coupling, seed, args.steps, dist, floor, train_s,
                           depth(args) if lib == "sbrun" else 0, args.ema if sb else 0.0)


def libs(args, coupling: str) -> tuple[str, ...]:
    inline = ("sbrun-inline",) if args.inline and coupling != "independent" else ()
    return ("torchcfm", "sbrun", *inline)


def full_task(makers: dict, args, seed: int) -> dict:
    """One training after the other, each timed whole (``Trainer.fit`` for sbrun)."""
    out = {}
    for key, make in makers.items():
        r = make()
        t0 = time.perf_counter()
        r.fit() if key[0].startswith("sbrun") else r.steps(args.steps)
        out[key] = (r, time.perf_counter() - t0)
    return out


def timing_task(makers: dict, args, seed: int) -> dict:
    """All trainings built, then advanced ``--block`` steps at a time in a shuffled
    round-robin until each has taken ``--steps``, so that all see the same load; the time
    reported is ``steps`` x the median block time per step (spikes drop out)."""
    import random

    runs = {key: make() for key, make in makers.items()}
    for r in runs.values():  # warm-up (first calls, the worker's start)
        r.steps(2)
    blocks = {key: [] for key in runs}
    order, rng = list(runs), random.Random(seed)
    for _ in range(max(1, args.steps // args.block)):
        rng.shuffle(order)
        for key in order:
            t0 = time.perf_counter()
            runs[key].steps(args.block)
            blocks[key].append((time.perf_counter() - t0) / args.block)
    return {key: (r, statistics.median(blocks[key]) * args.steps) for key, r in runs.items()}


def _write(out, fh, task, lib, peer, coupling, seed, steps, dist, floor, train_s, prefetch, ema) -> None:
    row = {"task": task, "lib": lib, "coupling": coupling, "seed": seed, "steps": steps, "w2": dist,
           "floor": floor, "ratio": dist / floor, "s_per_step": train_s / steps, "train_s": train_s,
           "prefetch": prefetch, "load": load(), "ema": ema}
    out.writerow(row)
    fh.flush()
    print(f"{task} {lib} {coupling if lib == 'sbrun' else peer} seed={seed}: W2 {dist:.3f} "
          f"floor {floor:.3f} ({dist / floor:.2f}x), {1e3 * train_s / steps:.1f} ms/step "
          f"(load {row['load']:.1f})", file=sys.stderr, flush=True)


def _data(task: str):
    from sbrun.pipeline.build import build

    return build(sbrun_cfg(task, "independent", 1, 0, False)).data


def fmt(vals: list[float], digits: int = 2) -> str:
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def table(path: Path) -> str:
    rows = list(csv.DictReader(path.open()))
    lines = ["| task | torchcfm / sbrun | seeds | W2/floor torchcfm | W2/floor sbrun | "
             "ms/step torchcfm | ms/step sbrun | step ratio sbrun/torchcfm |",
             "|---|---|---|---|---|---|---|---|"]
    ms = {}
    for task in TASKS:
        for peer, coupling in PAIRS:
            sel = {lib: [r for r in rows if r["task"] == task and r["coupling"] == coupling
                         and r["lib"] == lib] for lib in ("torchcfm", "sbrun", "sbrun-inline")}
            if not any(sel.values()):
                continue
            ratio = {k: [float(r["ratio"]) for r in v] for k, v in sel.items()}
            step = {k: [1e3 * float(r["s_per_step"]) for r in v] for k, v in sel.items()}
            ms[task, coupling] = {k: statistics.mean(v) for k, v in step.items() if v}
            both = ms[task, coupling]
            rel = f"{both['sbrun'] / both['torchcfm']:.2f}" if {"sbrun", "torchcfm"} <= set(both) else "–"
            seeds = f"{len(sel['torchcfm'])}/{len(sel['sbrun'])}"
            lines.append(f"| {task} | {peer} / {coupling} | {seeds} | {fmt(ratio['torchcfm'])} | "
                         f"{fmt(ratio['sbrun'])} | {fmt(step['torchcfm'], 1)} | "
                         f"{fmt(step['sbrun'], 1)} | {rel} |")
    lines.append("")
    for task in TASKS:
        parts = []
        ot_, ind, ent = (ms.get((task, c), {}) for c in ("exact_ot", "independent", "entropic_ot"))
        if "sbrun" in ot_ and "torchcfm" in ot_:
            parts.append(f"exact_ot / OT-CFM step {ot_['sbrun'] / ot_['torchcfm']:.2f} (target <= 0.5)")
        if "sbrun" in ent and "sbrun" in ind:
            parts.append(f"entropic_ot / independent step {ent['sbrun'] / ind['sbrun']:.2f} (target <= 2)")
        inline = [f"{c} {both['sbrun-inline']:.1f} ms/step ({both['sbrun-inline'] / both['sbrun']:.2f}x "
                  "the prefetched step)" for c in ("exact_ot", "entropic_ot")
                  if {"sbrun", "sbrun-inline"} <= set(both := ms.get((task, c), {}))]
        if inline:
            parts.append("without the worker (trainer.prefetch=false): " + ", ".join(inline))
        if parts:
            lines.append(f"- {task}: " + "; ".join(parts))
    emas = sorted({r.get("ema") or "0" for r in rows if r["lib"].startswith("sbrun")})
    if emas:
        lines.append(f"- sbrun samples with its weights' EMA, decay {' / '.join(emas)} (0: the last "
                     "weights, as torchcfm)")
    loads = [float(r["load"]) for r in rows]
    if loads:
        lines.append(f"- load average (1 min) at the end of the runs: {min(loads):.1f}–{max(loads):.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--couplings", nargs="*", default=[c for _, c in PAIRS],
                   choices=[c for _, c in PAIRS])
    p.add_argument("--sb-ot", default="sinkhorn", choices=["sinkhorn", "exact"],
                   help="torchcfm SB-CFM's plan (its default is exact; sinkhorn is the entropic plan)")
    p.add_argument("--no-prefetch", action="store_true", help="sbrun: trainer.prefetch=false")
    p.add_argument("--ema", type=float, default=0.999,
                   help="sbrun: trainer.ema, the decay of the weights it samples with (its trainer's "
                        "default; torchcfm's 2D runner keeps no average: 0 runs sbrun likewise)")
    p.add_argument("--prefetch", type=int, default=2,
                   help="sbrun: trainer.prefetch, batches in flight on as many worker processes")
    p.add_argument("--inline", action="store_true",
                   help="also sbrun's coupled trainings without the worker (sbrun-inline rows)")
    p.add_argument("--csv", type=Path, default=Path("bench_peers.csv"))
    p.add_argument("--table", type=Path, default=None, help="print the table of this CSV and stop")
    p.add_argument("--timing", action="store_true",
                   help="step times side by side: shuffled round-robin blocks of --block steps")
    p.add_argument("--block", type=int, default=20)
    args = p.parse_args(argv)
    if args.table is None:
        try:
            import torchcfm  # noqa: F401
        except ImportError:
            p.error("torchcfm is not installed: pip install '.[peers]'")
        import warnings

        torch.set_num_threads(1)
        warnings.filterwarnings("ignore")  # POT's Sinkhorn warnings at reg = 0.02 (see --sb-ot)
        run(args)
    print(table(args.table or args.csv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
