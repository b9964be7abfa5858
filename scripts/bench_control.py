"""Gradient estimators of method=control: time per step and peak memory at N steps, and the
objective against wall time (seed 002's "N forward, N backward" vs "K forward, K backward").

Each (estimator, N) is measured in a fresh subprocess (wall and CPU time per step: on a
shared machine the CPU time is the comparable one): peak memory is the growth of the
process's peak resident set (CPU; ``ru_maxrss``) or ``torch.cuda.max_memory_allocated``
(GPU) over what the process held after a warm-up step at N = 2. The problem: the reference
``dX = sigma dW`` from the origin, the quadratic reward ``-|x - c|^2 / 2`` (closed-form
target), a control MLP of ``--hidden`` x 3 layers, a batch of ``--batch``.

    python scripts/bench_control.py                      # table at N = 20, 100, 500
    python scripts/bench_control.py --curves 60 --out figures/control_estimators.png

``--curves S`` also trains each estimator for S seconds at ``--curve-steps`` and draws the
objective and the KL of the samples' moment-matched Gaussian to the closed form against
wall time, next to the memory and time tables.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sbrun.control import estimators as est  # noqa: E402
from sbrun.control.chains import BrownianChain  # noqa: E402
from sbrun.control.metrics import gaussian_errors  # noqa: E402
from sbrun.control.objective import reward_objective  # noqa: E402
from sbrun.data.distributions import StandardGaussian  # noqa: E402
from sbrun.models.mlp import MLP  # noqa: E402


def setup(args, steps: int, device: torch.device):
    obj = reward_objective("quadratic", 1.0, StandardGaussian((2,)), (2,), center=[2.0, 1.0])
    obj.beta.to(device)
    torch.manual_seed(0)
    u = MLP((2,), hidden=args.hidden, depth=3).to(device)
    return obj, BrownianChain((2,), steps, 1.0), u


def loss_fn(name: str, chain, u, x0, beta, g, am_times: int):
    if name == "adjoint_matching":
        return est.adjoint_matching_loss(chain, u, x0, beta, g, times=am_times)[0]
    return getattr(est, f"{name}_loss")(chain, u, x0, beta, g)[0]


def one_step(name, chain, u, opt, beta, args, device, g):
    x0 = torch.zeros(args.batch, 2, device=device)
    loss = loss_fn(name, chain, u, x0, beta, g, args.am_times)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def measure(args) -> dict:
    """Child process: time per step and peak memory of one (estimator, N)."""
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    obj, chain, u = setup(args, args.n, device)
    opt = torch.optim.Adam(u.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    one_step(args.estimator, BrownianChain((2,), 2, 1.0), u, opt, obj.beta, args, device, g)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(args.repeats):
        one_step(args.estimator, chain, u, opt, obj.beta, args, device, g)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    return {"estimator": args.estimator, "N": args.n,
            "seconds_per_step": (time.perf_counter() - t0) / args.repeats,
            "cpu_seconds_per_step": (time.process_time() - c0) / args.repeats, "peak_mib": peak}


def curves(args) -> dict:
    """Objective and KL to the closed form against wall time, per estimator."""
    device = torch.device(args.device)
    out = {}
    for name in est.ESTIMATORS:
        obj, chain, u = setup(args, args.curve_steps, device)
        opt = torch.optim.Adam(u.parameters(), lr=3e-3)
        g, rows, t0, clock = torch.Generator().manual_seed(0), [], time.perf_counter(), 0.0
        while clock < args.curves:
            for _ in range(5):
                one_step(name, chain, u, opt, obj.beta, args, device, g)
            clock = time.perf_counter() - t0
            ro = est.rollout(chain, u, torch.zeros(4000, 2, device=device), obj.beta,
                             torch.Generator().manual_seed(1), keep=False)
            rows.append((clock, float((ro.running + ro.beta).mean()),
                         gaussian_errors(ro.xs[-1].cpu(), obj.target)["kl_gaussian"]))
            t0 += time.perf_counter() - t0 - clock  # evaluation time is not training time
        out[name] = rows
        print(f"{name}: objective {rows[-1][1]:.4f}, kl {rows[-1][2]:.2e} after {clock:.0f} s",
              flush=True)
    return out


def figure(table: list[dict], curve: dict | None, path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    ncol = 4 if curve else 2
    fig, axes = plt.subplots(1, ncol, figsize=(4.2 * ncol, 3.8))
    for j, name in enumerate(est.ESTIMATORS):
        rows = [r for r in table if r["estimator"] == name]
        ns = [r["N"] for r in rows]
        axes[0].plot(ns, [r["peak_mib"] for r in rows], "o-", color=f"C{j}", label=name)
        axes[1].plot(ns, [r.get("cpu_seconds_per_step", r["seconds_per_step"]) for r in rows], "o-",
                     color=f"C{j}", label=name)
        if curve:
            t, obj, kl = zip(*curve[name])
            axes[2].plot(t, obj, color=f"C{j}", label=name)
            axes[3].semilogy(t, kl, color=f"C{j}", label=name)
    axes[0].set(xlabel="chain steps N", ylabel="peak memory growth (MiB)", xscale="log")
    axes[1].set(xlabel="chain steps N", ylabel="CPU seconds per step", xscale="log", yscale="log")
    for ax in axes[:2]:
        ax.set_xticks(sorted({r["N"] for r in table}), [str(n) for n in sorted({r["N"] for r in table})])
        ax.minorticks_off()
    if curve:
        axes[2].set(xlabel="wall time (s)", ylabel="objective E[∫|u|²/2 + β]")
        axes[3].set(xlabel="wall time (s)", ylabel="KL to the closed form")
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, nargs="+", default=[20, 100, 500])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--am-times", type=int, default=20, help="K of adjoint matching")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--curves", type=float, default=0.0, help="seconds of training per estimator")
    p.add_argument("--curve-steps", type=int, default=100)
    p.add_argument("--out", type=Path, default=REPO / "figures" / "control_estimators.png")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--estimator", default=None, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args)))
        return 0
    torch.set_num_threads(args.threads)
    table = []
    print(f"| estimator | N | s/step (wall) | CPU s/step | peak MiB |  (batch {args.batch}, "
          f"MLP {args.hidden}x3, {args.device}, {args.threads} thread(s), "
          f"adjoint matching K = {args.am_times})")
    print("|---|---|---|---|---|")
    for name in est.ESTIMATORS:
        for n in args.steps:
            cmd = [sys.executable, __file__, "--child", "--estimator", name, "--n", str(n),
                   "--batch", str(args.batch), "--hidden", str(args.hidden), "--am-times",
                   str(args.am_times), "--repeats", str(args.repeats), "--threads",
                   str(args.threads), "--device", args.device]
            row = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True)
                             .stdout.strip().splitlines()[-1])
            table.append(row)
            print(f"| {name} | {n} | {row['seconds_per_step']:.3f} | "
                  f"{row.get('cpu_seconds_per_step', float('nan')):.3f} | {row['peak_mib']:.0f} |",
                  flush=True)
    curve = curves(args) if args.curves > 0 else None
    if args.json:
        args.json.write_text(json.dumps({"table": table, "curves": curve}, indent=1))
    figure(table, curve, args.out, f"control estimators (batch {args.batch}, {args.device})")
    print(f"figure: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
