"""DSB benchmarks: seconds per IPF iteration, W2 per iteration, Gaussian coupling error.

    python scripts/bench_dsb.py                       # swiss roll -> S-curve, default settings
    python scripts/bench_dsb.py --official            # + timing at the reference code's settings
    python scripts/bench_dsb.py --gaussian 2 8        # cB-W2-UVP per iteration vs the closed form
    python scripts/bench_dsb.py -o method.ipf_iters=3 trainer.steps=500   # any sbrun overrides

Prints markdown tables. Times are wall-clock on ``trainer.threads`` threads (1 by
default) and include the trajectory cache; evaluation time is reported apart. The
official implementation's numbers (ANCHORS.md: JTT94/diffusion_schrodinger_bridge,
measured on this kind of machine) are for data scaled to std 7, so W2 is compared as
``W2 / floor``. The Gaussian task scores the learned forward chain against the
closed-form Schrödinger bridge of ``dX = sigma dW`` (eps = sigma^2; Bunne et al. 2023;
``sbrun.couplings.gaussian``): cB-W2-UVP (Gushchin et al. 2023; ``sbrun.metrics.gaussian``)
in %, next to the same estimator on exact draws of the bridge (its Monte Carlo floor).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from sbrun.config import compose

OFFICIAL = {"s_per_iter": 155.0, "train_s_half": 30.0, "cache_s_half": 33.0, "plot_s_half": 16.0,
            "w2": [3.55, 2.87, 2.75, 2.57, 2.47], "w2_untrained": 4.68, "floor": 0.6,
            "N": 20, "steps_half": 5000, "batch": 512, "params": 26_500, "cache": 10_000}


def train(overrides: list[str], score) -> tuple[list[dict], dict]:
    """Train DSB with ``overrides``; ``score(components, cfg, nets) -> dict`` after each
    evaluated phase. Returns one row per IPF iteration (with wall seconds) and totals."""
    from sbrun.pipeline.build import build
    from sbrun.pipeline.trainer import Trainer

    cfg = compose(["method=dsb", "logger=none", "trainer.progress=false",
                   "trainer.checkpoint_every=0", "trainer.threads=1", *overrides])
    if cfg.trainer.threads > 0:
        torch.set_num_threads(cfg.trainer.threads)
    c = build(cfg)
    rows, clock = [], {"t": time.perf_counter(), "eval": 0.0}

    def evaluate(nets, step, phase):
        t0 = time.perf_counter()
        row = {"ipf_iter": step, "seconds": t0 - clock["t"], **score(c, cfg, nets)}
        clock["eval"] += time.perf_counter() - t0
        row["eval_seconds"] = time.perf_counter() - t0
        rows.append(row)
        clock["t"] = time.perf_counter()
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in row.items()), flush=True)
        return {}

    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        trainer = Trainer(cfg.trainer, c.method, c.nets, c.data, d, c.device, cfg.seed,
                          evaluate=evaluate)
        trainer.fit()
        total = time.perf_counter() - t0
    n_params = sum(p.numel() for p in c.nets["F"].parameters())
    return rows, {"total": total, "eval": clock["eval"], "steps": trainer.step,
                  "n_params_per_net": n_params, "cfg": cfg}


def evaluator_score(c, cfg, nets) -> dict:
    """The run's own evaluator (W2 both ends with floors, KL)."""
    from sbrun.pipeline.evaluator import Evaluator

    if not hasattr(evaluator_score, "ev"):
        evaluator_score.ev = Evaluator(cfg.eval, c.method, c.data, c.solver, cfg.solver.steps,
                                       c.device, cfg.seed)
    m = evaluator_score.ev(nets, 0)
    keys = ("w2", "w2_floor", "w2_ratio", "w2_backward", "w2_floor_backward", "kl", "kl_backward")
    return {k: float(m[k]) for k in keys if k in m}


# -- Gaussian ground truth -------------------------------------------------------------
def gaussian_score(n: int, k: int):
    """cB-W2-UVP (%) of the forward chain from ``n`` source points, ``k`` draws each, and the
    same estimator on exact draws of the closed-form bridge (its Monte Carlo floor)."""
    from sbrun.couplings.gaussian import gaussian_sb_conditional
    from sbrun.metrics.gaussian import cbw2_uvp

    def score(c, cfg, nets) -> dict:
        g0, g1 = c.problem.source, c.problem.target  # sbrun.data.gaussians.Gaussian (full)
        sigma = float(c.sde.sigma)
        x0 = c.problem.source.heldout(n, 0)
        g = torch.Generator().manual_seed(1)
        res = c.method.transport(nets, x0.repeat_interleave(k, 0).to(c.device), c.solver, None,
                                 generator=g)
        out = {"cbw2_uvp": cbw2_uvp(x0.double(), res.x.cpu().reshape(n, k, -1), g0, g1, sigma)}
        if not hasattr(score, "floor"):
            mean, cov = gaussian_sb_conditional(g0, g1, sigma, x0)
            z = torch.randn(n, k, g0.dim, generator=g, dtype=torch.float64)
            exact = mean[:, None] + z @ torch.linalg.cholesky(cov).T
            score.floor = cbw2_uvp(x0.double(), exact, g0, g1, sigma)
        out["floor"] = score.floor
        return out

    return score


# -- tables ------------------------------------------------------------------------------
def table(rows: list[dict], keys: list[str]) -> str:
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[k]:.3f}" if isinstance(r.get(k), float) else
                                       str(r.get(k, "")) for k in keys) + " |")
    return "\n".join(lines)


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def bench_default(overrides: list[str]) -> None:
    rows, tot = train(["data=swissroll2scurve", *overrides], evaluator_score)
    cfg = tot["cfg"]
    for r in rows:
        r["train_s"] = r["seconds"]
    print(f"\n## DSB swiss roll -> S-curve (N={cfg.method.num_steps}, {cfg.trainer.steps} steps "
          f"per half, batch {cfg.trainer.batch_size}, cache {cfg.method.cache_size} refreshed every "
          f"{cfg.method.cache_refresh}, sigma={cfg.sde.sigma}, {tot['n_params_per_net']} params per "
          f"net, {cfg.trainer.threads} thread(s); load {load()})\n")
    print(table(rows, ["ipf_iter", "train_s", "eval_seconds", "w2", "w2_floor", "w2_ratio",
                       "w2_backward", "w2_floor_backward", "kl", "kl_backward"]))
    print(f"\ntotal {tot['total']:.0f} s ({tot['eval']:.0f} s evaluating), "
          f"{(tot['total'] - tot['eval']) / len(rows):.1f} s per IPF iteration without evaluation")
    off = [w / OFFICIAL["floor"] for w in OFFICIAL["w2"]]
    print("\n| ipf_iter | sbrun W2/floor | official W2/floor (std-7 data) |\n|---|---|---|")
    for i in range(max(len(rows), len(off))):
        ours = f"{rows[i]['w2_ratio']:.2f}" if i < len(rows) else ""
        theirs = f"{off[i]:.2f}" if i < len(off) else ""
        print(f"| {i + 1} | {ours} | {theirs} |")


def bench_official(overrides: list[str], steps: int) -> None:
    """Time sbrun at the reference code's sizes and extrapolate to 5000 steps per half."""
    o = OFFICIAL
    rows, tot = train(["data=swissroll2scurve", f"method.num_steps={o['N']}",
                       f"trainer.batch_size={o['batch']}", "model.hidden=96", "model.depth=3",
                       f"method.cache_size={o['cache']}", "method.cache_refresh=100",
                       "method.ipf_iters=1", f"trainer.steps={steps}", *overrides],
                      lambda c, cfg, nets: {})
    per_step = (tot["total"] - tot["eval"]) / tot["steps"]
    est = 2 * o["steps_half"] * per_step
    print(f"\n## At the official settings (N={o['N']}, batch {o['batch']}, cache {o['cache']} "
          f"paths every 100 steps, {tot['n_params_per_net']} params per net vs ~{o['params']}; "
          f"load {load()})\n")
    print("| implementation | s per IPF iteration (training + cache) | note |\n|---|---|---|")
    print(f"| official (measured, ANCHORS.md) | {2 * (o['train_s_half'] + o['cache_s_half']):.0f} "
          f"| +{2 * o['plot_s_half']:.0f} s plotting = {o['s_per_iter']:.0f} s |")
    print(f"| sbrun (measured {tot['steps']} steps, extrapolated to {o['steps_half']}/half) "
          f"| {est:.0f} | {1e3 * per_step:.1f} ms per step incl. cache |")


def bench_gaussian(dims: list[int], overrides: list[str], n: int, k: int) -> None:
    for d in dims:
        rows, tot = train(["data=gaussian2gaussian", f"data.dim={d}",
                           "method.sample_noise_last_step=true", *overrides],
                          gaussian_score(n, k))
        cfg = tot["cfg"]
        print(f"\n## Gaussian -> Gaussian, d = {d} (sigma = {cfg.sde.sigma}, eps = sigma^2; "
              f"N={cfg.method.num_steps}, {cfg.trainer.steps} steps per half; {n} x {k} draws; "
              f"load {load()})\n")
        print(table(rows, ["ipf_iter", "seconds", "cbw2_uvp", "floor"]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--overrides", nargs="*", default=[], help="sbrun overrides")
    p.add_argument("--official", action="store_true", help="also time the official settings")
    p.add_argument("--official-steps", type=int, default=300)
    p.add_argument("--gaussian", nargs="*", type=int, default=None, metavar="DIM",
                   help="Gaussian coupling benchmark in these dimensions (instead of the default)")
    p.add_argument("--points", type=int, default=64, help="Gaussian: source points scored")
    p.add_argument("--repeats", type=int, default=512, help="Gaussian: draws per source point")
    a = p.parse_args(argv)
    if a.gaussian is not None:
        bench_gaussian(a.gaussian or [2, 8], a.overrides, a.points, a.repeats)
        return 0
    bench_default(a.overrides)
    if a.official:
        bench_official(a.overrides, a.official_steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
