"""Every Schrödinger-bridge method against the closed-form Gaussian bridge.

    python scripts/bench_sb.py                                   # the full grid (hours on 2 cores)
    python scripts/bench_sb.py --methods eot flow-matching --dims 2 16 --sigmas 1
    python scripts/bench_sb.py --dims 2 -o trainer.steps=500     # any sbrun overrides, for all
    python scripts/bench_sb.py --jsonl sb.jsonl                  # append one row per run
    python scripts/bench_sb.py --score-run outputs/<date>/<time>  # score a finished sbrun run
    python scripts/bench_sb.py --table sb.jsonl                  # the markdown table of a file

Grid: every bridge-capable method (eot, dsb, flow-matching as [SF]2M, the stochastic
interpolant as the bridge, and every other ``conf/method`` whose default build claims a
bridge, ``Method.bridge_sigma()``) x ``d`` x ``sigma`` on ``data=gaussian2gaussian``
(random SPD covariances of condition number 10, unequal and non-diagonal) at the method's
default settings (flow matching and the interpolant with ``coupling=entropic_ot`` and a
stochastic solver, which is what makes them bridges). Per run:

* ``cbw2_uvp``: conditional BW2-UVP (%; Gushchin et al. 2023) of ``points`` held-out source
  points x ``repeats`` draws each, as ``sbrun-transport --repeats K`` would draw them, and
  ``floor``: the same estimator on exact draws of the closed-form conditional (what a
  perfect sampler scores with that many draws);
* ``plan_bw2_uvp``: BW2-UVP (%) of the joint law of 2000 pairs ``(x0, x1)``;
* ``w2_ratio``: W2 of those 2000 ``x1`` to held-out target draws over the W2 between two
  held-out target sets (1 = as good as sampling the target);
* ``train_s``: wall seconds of training (eot: solving its plan), with the load average.

Targets (issue 13): cB-W2-UVP <= 2 % at d = 2 and <= 5 % at d = 16, sigma = 1.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from sbrun.config import CONF_DIR, compose

# How each method is made a bridge; other conf/method entries are tried at their defaults.
BRIDGES = {
    "eot": [],
    "dsb": [],
    "flow-matching": ["method.coupling=entropic_ot", "solver=euler_maruyama"],
    "stochastic-interpolant": ["method.coupling=entropic_ot", "solver=euler_maruyama"],
}
NOT_BRIDGES = ("ddpm", "score-sde", "multimarginal")  # generative only / no reference


def bridge_methods() -> dict[str, list[str]]:
    """``BRIDGES`` plus every other method config whose default build claims a bridge."""
    from sbrun.errors import SbrunError
    from sbrun.pipeline.build import build

    out = dict(BRIDGES)
    for path in sorted((CONF_DIR / "method").glob("*.yaml")):
        name = path.stem
        if name in out or name in NOT_BRIDGES:
            continue
        for extra in ([], ["solver=euler_maruyama"]):
            try:
                c = build(compose([f"method={name}", "data=gaussian2gaussian", "logger=none",
                                   "device=cpu", *extra]))
                from sbrun.solvers import check_solver

                check_solver(c.solver, c.method)
            except (SbrunError, Exception):  # noqa: BLE001 - not buildable this way
                continue
            if c.method.bridge_sigma() is not None:
                out[name] = extra
            break
    return out


def score(method, nets, solver, grid, problem, bridge: float, points: int, repeats: int,
          seed: int, transport=None) -> dict:
    """cB-W2-UVP (with its floor), plan BW2-UVP and W2 ratio of a trained method.

    ``transport(x, k) -> (n, k, d)``: ``k`` draws per row of ``x`` (default: the method's
    own ``transport`` on ``x`` repeated ``k`` times, in chunks)."""
    from sbrun.couplings.gaussian import gaussian_sb_conditional
    from sbrun.metrics.distances import w2
    from sbrun.metrics.gaussian import cbw2_uvp, plan_error

    gen = torch.Generator().manual_seed(seed + 1)
    if transport is None:
        def transport(x, k):
            xr = x.repeat_interleave(k, 0)
            out = torch.cat([method.transport(nets, chunk, solver, grid, generator=gen).x
                             for chunk in xr.split(8192)])
            return out.reshape(x.shape[0], k, -1)

    g0, g1 = problem.source, problem.target  # sbrun.data.gaussians.Gaussian (full)
    d = g0.dim
    with torch.no_grad():
        x0 = problem.source.heldout(points, seed + 10)
        k = repeats if method.stochastic else 1
        cb = cbw2_uvp(x0.double(), transport(x0, k).double(), g0, g1, bridge)
        mean, cov = gaussian_sb_conditional(g0, g1, bridge, x0)
        z = torch.randn(points, k, d, generator=gen, dtype=torch.float64)
        floor = cbw2_uvp(x0.double(), mean[:, None] + z @ torch.linalg.cholesky(cov).T,
                         g0, g1, bridge)
        xp = problem.source.heldout(2000, seed + 20)
        yp = transport(xp, 1)[:, 0].float()
        plan = plan_error(xp.double(), yp.double(), g0, g1, bridge)
        ta, tb = problem.target.heldout(2000, seed + 30), problem.target.heldout(2000, seed + 31)
        wg = torch.Generator().manual_seed(0)
        ratio = w2(yp, ta, max_points=2000, generator=wg) / w2(tb, ta, max_points=2000,
                                                                  generator=wg)
    return {"cbw2_uvp": cb, "floor": floor, "plan_bw2_uvp": plan, "w2_ratio": ratio,
            "repeats": k}


def score_run(run_dir: str, points: int, repeats: int, seed: int = 0) -> dict:
    """Score a finished ``data=gaussian2gaussian`` run through ``sbrun-transport``'s
    ``transport_points`` (``--repeats K``)."""
    from omegaconf import OmegaConf

    from sbrun.pipeline.build import build
    from sbrun.transport import transport_points

    cfg = OmegaConf.load(Path(run_dir) / ".hydra" / "config.yaml")
    cfg.device = "cpu"
    c = build(cfg)
    bridge = c.method.bridge_sigma()

    def transport(x, k):
        out = transport_points(run_dir, x.numpy(), repeats=k, seed=seed)["x1"]
        return torch.as_tensor(out).reshape(x.shape[0], k, -1)

    t0 = time.perf_counter()
    row = score(c.method, None, None, None, c.problem, bridge, points, repeats, seed, transport)
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    return {"method": c.method.name, "d": int(cfg.data.dim), "sigma": float(cfg.sde.sigma), **row,
            "train_s": metrics.get("train_seconds"), "eval_s": time.perf_counter() - t0,
            "steps": metrics.get("steps"), "load": os.getloadavg()[0], "options": f"run {run_dir}"}


def run_one(method: str, extra: list[str], d: int, sigma: float, overrides: list[str],
            points: int, repeats: int, seed: int = 0) -> dict:
    from sbrun.pipeline.build import build
    from sbrun.pipeline.trainer import Trainer
    from sbrun.solvers import check_solver, time_grid

    cfg = compose([f"method={method}", "data=gaussian2gaussian", f"data.dim={d}",
                   f"sde.sigma={sigma}", "logger=none", "trainer.progress=false",
                   "trainer.threads=1", "trainer.checkpoint_every=0", "device=cpu",
                   f"seed={seed}", *extra, *overrides])
    torch.set_num_threads(max(cfg.trainer.threads, 1))
    c = build(cfg)
    check_solver(c.solver, c.method)
    bridge = c.method.bridge_sigma()
    if bridge is None:
        raise RuntimeError(f"{method} with {extra + overrides} claims no bridge")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg.trainer, c.method, c.nets, c.data, tmp, c.device, cfg.seed)
        trainer.fit()
        nets = trainer.ema
        grid = time_grid(cfg.solver.steps)
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():  # eot solves its plan lazily: count it as its training
            c.method.transport(nets, c.problem.source.heldout(2, seed), c.solver, grid,
                               generator=gen)
    train_s = time.perf_counter() - t0
    nets.eval()
    t1 = time.perf_counter()
    row = score(c.method, nets, c.solver, grid, c.problem, bridge, points, repeats, seed)
    return {"method": method, "d": d, "sigma": sigma, **row, "train_s": train_s,
            "eval_s": time.perf_counter() - t1, "steps": trainer.step,
            "load": os.getloadavg()[0], "options": " ".join(extra + overrides)}


def table(rows: list[dict]) -> str:
    keys = ["method", "d", "sigma", "cbw2_uvp", "floor", "plan_bw2_uvp", "w2_ratio", "train_s",
            "steps", "load"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        cells = [f"{r[k]:.3g}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys]
        if "error" in r:
            cells[3] = f"failed: {r['error'][:80]}"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def emit(row: dict, jsonl: str | None) -> None:
    """Print a finished row at once and append it to ``jsonl`` (a long grid loses nothing)."""
    print(json.dumps(row), flush=True)
    if jsonl:
        with open(jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="*", default=None, help="default: every bridge method")
    p.add_argument("--dims", nargs="*", type=int, default=[2, 16, 64])
    p.add_argument("--sigmas", nargs="*", type=float, default=[0.3, 1.0, 3.0])
    p.add_argument("--points", type=int, default=64, help="source points of cB-W2-UVP")
    p.add_argument("--repeats", type=int, default=512, help="draws per source point")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jsonl", default=None, help="append every finished row to this file")
    p.add_argument("-o", "--overrides", nargs="*", default=[], help="sbrun overrides for all runs")
    p.add_argument("--score-run", nargs="*", default=None, metavar="RUN_DIR",
                   help="only score these finished data=gaussian2gaussian runs")
    p.add_argument("--table", default=None, metavar="JSONL", help="only print this file's table")
    a = p.parse_args(argv)
    if a.table:
        print(table([json.loads(line) for line in Path(a.table).read_text().splitlines() if line]))
        return 0
    if a.score_run:
        rows = [score_run(r, a.points, a.repeats, a.seed) for r in a.score_run]
        for row in rows:
            emit(row, a.jsonl)
        print("\n" + table(rows))
        return 0
    methods = bridge_methods()
    if a.methods:
        unknown = [m for m in a.methods if m not in methods]
        if unknown:
            p.error(f"not a bridge method here: {', '.join(unknown)} (have: {', '.join(methods)})")
        methods = {m: methods[m] for m in a.methods}
    rows = []
    for d in a.dims:
        for sigma in a.sigmas:
            for m, extra in methods.items():
                try:
                    row = run_one(m, extra, d, sigma, a.overrides, a.points, a.repeats, a.seed)
                except Exception as e:  # noqa: BLE001 - a failed run is a row, the grid goes on
                    row = {"method": m, "d": d, "sigma": sigma, "error": f"{type(e).__name__}: {e}",
                           "load": os.getloadavg()[0]}
                rows.append(row)
                emit(row, a.jsonl)
    print("\n" + table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
