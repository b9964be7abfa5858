"""Figures of trained diffusion runs (``sbrun method=score-sde|ddpm``); methods stay I/O-free.

    python scripts/diffusion_figures.py forward-reverse RUN_DIR [--nll-points N] [--nll-solvers ...]
        -> RUN_DIR/figures/forward_reverse.png, ode_sde_paths.png, ve_vs_vp.png,
           nll_solvers.png; RUN_DIR/nll_solvers.json, post_metrics.json   (seed 001)
    python scripts/diffusion_figures.py as-ot RUN_DIR [RUN_DIR ...] [--out DIR]
        -> RUN_DIR/figures/diffusion_as_ot.png, RUN_DIR/diffusion_as_ot.json and, over the
           runs (e.g. a multirun over trainer.steps), DIR/map_gap.png + map_gap.json (seed 000)

``as-ot`` compares the probability-flow encoder ``E(x)`` (data -> prior) with the exact
Monge map ``T`` between the same held-out data and prior draws (POT ``emd`` on the
samples, uniform weights: an assignment), and reports ``map_gap = mean |E(x) - T(x)|``,
plus ``map_gap_self``: the same with ``T`` the OT assignment between ``x`` and ``E(x)``
itself (zero exactly when ``E`` is an optimal map onto its own image), for several
numbers of ODE steps.

``forward-reverse`` also draws the same held-out data noised by the VE and the VP SDE
(``ve_vs_vp.png``; no training involved) and tabulates the exact NLL of the run's own
held-out NLL points (``method.nll_points`` unless ``--nll-points``) by the probability-flow
ODE per likelihood solver (``diffusion_post.py``): ``nll_solvers.json``/``.png``, a
Markdown table on stdout and ``post_metrics.json`` (``nll_<scheme>_<setting>`` per row,
``nll_solver_gap``: |NLL - NLL(dopri5:1e-5)| of the other setting with the most NFE, by
default rk4:100; small when both have converged).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import diffusion_post as post  # noqa: E402


def load_run(run_dir: Path):
    """``(cfg, components)`` of a finished run, with its EMA weights, on the CPU."""
    import torch
    from omegaconf import OmegaConf

    from sbrun.pipeline.build import build
    from sbrun.pipeline.checkpoint import load_checkpoint

    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    cfg.device = "cpu"
    c = build(cfg)
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt", map_location="cpu")
    c.nets.load_state_dict(state["ema"])
    c.nets.eval()
    torch.set_grad_enabled(False)
    return cfg, c


def forward_reverse(run_dir: Path, n: int, n_paths: int, steps: int,
                    nll_points: int | None = None, nll_solvers=post.NLL_SOLVERS) -> None:
    import torch

    from sbrun.plots.diffusion import forward_reverse as fig_fr
    from sbrun.plots.diffusion import ode_sde_paths
    from sbrun.solvers import get_solver, time_grid

    cfg, c = load_run(run_dir)
    sde, method = c.method.sde, c.method
    s_cols = torch.tensor([0.0, 0.1, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    data = c.problem.target.heldout(n, cfg.seed)
    fwd = torch.stack([sde.marginal(torch.full((n,), float(s)), data).sample(
        generator=torch.Generator().manual_seed(k)) for k, s in enumerate(s_cols)])
    grid = time_grid(steps)
    x0 = method.prior.heldout(n, cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    sde_res = method.transport(c.nets, x0, get_solver("euler_maruyama"), grid, generator=g, keep=n)
    ode_res = method.transport(c.nets, x0, get_solver("heun"), grid, keep=n)
    # the columns' noising times on the solver grid: s = 1 - (1 - s_min) t
    t_cols = sde.to_sbrun_time(s_cols.clamp(min=sde.s_min)).clamp(0, 1)
    cols = (t_cols * steps).round().long()
    title = (f"{method.name} ({post.sde_label(sde)}) on {c.problem.name}, {cfg.trainer.steps} "
             f"training steps; reverse SDE: euler_maruyama x {steps}, ODE: heun x {steps}")
    figs = {
        "forward_reverse": fig_fr(s_cols, fwd, sde_res.path[:, cols].transpose(0, 1),
                                  ode_res.path[:, cols].transpose(0, 1), title),
        "ode_sde_paths": ode_sde_paths(grid, ode_res.path[:n_paths], sde_res.path[:n_paths],
                                       title),
        "ve_vs_vp": post.ve_vs_vp(data.double(), post.noising_sdes(cfg.sde), c.problem.name,
                                  seed=cfg.seed),
    }
    save(figs, run_dir / "figures")
    if nll_solvers:
        solver_nll(run_dir, cfg, c, nll_points, nll_solvers)


def solver_nll(run_dir: Path, cfg, c, n: int | None, specs) -> list[dict]:
    """The NLL-per-solver table of the run's held-out NLL points (the evaluator's)."""
    from sbrun.metrics.pairs import heldout_halves
    from sbrun.plots.diffusion import nll_solvers

    target = heldout_halves(c.data.target, cfg.eval.n_samples, cfg.seed)[0]
    x = target[: n or c.method.nll_points_for(target)]
    rows = post.nll_table(c.method, c.nets, x, specs)
    (run_dir / "nll_solvers.json").write_text(json.dumps(rows, indent=1))
    metrics = {post.metric_key(r["solver"]): r["nll"] for r in rows}
    others = [r for r in rows if r["solver"] != post.NLL_REFERENCE]
    if others and len(others) < len(rows):  # the reference and another setting
        metrics["nll_solver_gap"] = abs(max(others, key=lambda r: r["nfe"])["dnll"])
    (run_dir / "post_metrics.json").write_text(json.dumps(metrics, indent=1))
    title = (f"{c.method.name} ({post.sde_label(c.method.sde)}) on {c.problem.name}, "
             f"{cfg.trainer.steps} training steps: exact NLL of {len(x)} held-out points by "
             "the probability-flow ODE, per solver")
    save({"nll_solvers": nll_solvers(rows, title)}, run_dir / "figures")
    print(f"NLL per likelihood solver, {len(x)} held-out points ({run_dir}):")
    print(post.markdown(rows))
    return rows


def monge(x, y):
    """The exact OT assignment of equal-size point clouds (POT ``emd``): ``y[perm]``."""
    import numpy as np
    import ot

    a = np.full(len(x), 1.0 / len(x))
    plan = ot.emd(a, a, ot.dist(x, y), numItermax=10**7)
    return y[plan.argmax(1)]


def as_ot(runs: list[Path], n: int, ode_steps: list[int], out: Path | None) -> None:
    import numpy as np

    from sbrun.plots.diffusion import diffusion_as_ot, map_gap_curve
    from sbrun.solvers import configure, get_solver, time_grid

    summary = []
    for run_dir in runs:
        cfg, c = load_run(run_dir)
        x = c.problem.target.heldout(n, cfg.seed)
        z = c.method.prior.heldout(n, cfg.seed + 1).numpy().astype(np.float64)
        xn = x.numpy().astype(np.float64)
        ref = configure(get_solver("ode"), scheme="dopri5")
        t_map = monge(xn, z)  # the Monge map data -> prior draws
        rows = []
        for steps in [*ode_steps, 0]:  # 0: the adaptive (dopri5) reference
            solver = ref if steps == 0 else get_solver("heun")
            res = c.method.transport(c.nets, x, solver, time_grid(max(steps, 1)),
                                     direction="backward")
            e = res.x.numpy().astype(np.float64)
            t_self = monge(xn, e)
            rows.append({"ode_steps": steps or "dopri5", "nfe": res.nfe,
                         "map_gap": float(np.linalg.norm(e - t_map, axis=1).mean()),
                         "map_gap_self": float(np.linalg.norm(e - t_self, axis=1).mean())})
        title = f"{c.method.name} ({c.sde.name}) on {c.problem.name}, {cfg.trainer.steps} steps"
        save({"diffusion_as_ot": diffusion_as_ot(xn, e, t_map, title)}, run_dir / "figures")
        (run_dir / "diffusion_as_ot.json").write_text(json.dumps(rows, indent=1))
        summary.append({"run": str(run_dir), "train_steps": int(cfg.trainer.steps), "rows": rows})
        print(run_dir, json.dumps(rows))
    if out is not None and len(summary) > 1:
        out.mkdir(parents=True, exist_ok=True)
        summary.sort(key=lambda r: r["train_steps"])
        steps = [r["train_steps"] for r in summary]
        gaps = {"E vs T (prior draws)": [r["rows"][-1]["map_gap"] for r in summary],
                "E vs OT onto E(x)": [r["rows"][-1]["map_gap_self"] for r in summary]}
        save({"map_gap": map_gap_curve(steps, gaps, "training steps")}, out)
        (out / "map_gap.json").write_text(json.dumps(summary, indent=1))


def save(figs: dict, folder: Path) -> None:
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    for name, fig in figs.items():
        fig.savefig(folder / f"{name}.png", dpi=110)
        plt.close(fig)
        print("wrote", folder / f"{name}.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    fr = sub.add_parser("forward-reverse", help="seed 001: noising and generation over time")
    fr.add_argument("run", type=Path)
    fr.add_argument("--n", type=int, default=2000)
    fr.add_argument("--paths", type=int, default=40)
    fr.add_argument("--steps", type=int, default=200)
    fr.add_argument("--nll-points", type=int, default=None,
                    help="held-out points of the NLL table (default: the run's method.nll_points)")
    fr.add_argument("--nll-solvers", nargs="*", default=list(post.NLL_SOLVERS),
                    help="SCHEME:TOL (adaptive) or SCHEME:STEPS (euler|heun|rk4); none: no table")
    ot_ = sub.add_parser("as-ot", help="seed 000: probability-flow map vs the Monge map")
    ot_.add_argument("runs", type=Path, nargs="+")
    ot_.add_argument("--n", type=int, default=1000)
    ot_.add_argument("--ode-steps", type=int, nargs="+", default=[2, 5, 10, 50])
    ot_.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    import torch

    torch.set_num_threads(1)
    if a.cmd == "forward-reverse":
        forward_reverse(a.run, a.n, a.paths, a.steps, a.nll_points, a.nll_solvers)
    else:
        as_ot(a.runs, a.n, a.ode_steps, a.out)


if __name__ == "__main__":
    main()
