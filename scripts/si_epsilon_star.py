"""Where the best diffusion level of a stochastic interpolant lies, and why (seed 004).

    sbrun -m +experiment=si_epsilon_star hydra.sweep.dir=<sweep>   # trainer.steps=1000,4000
    python scripts/si_epsilon_star.py <sweep> [--epsilons 0 0.25 ... 20] [--metrics FILE]
    python scripts/si_epsilon_star.py <run_a> <run_b> ...            # or single runs

Each run is one trained ``b`` and ``s`` on ``data=gmm_highdim`` (the target's density and
the interpolant's exact fields are known: :mod:`sbrun.metrics.interpolant_truth`). The
script re-samples the same networks at every ``epsilon`` (``dX = (b + eps s) dt +
sqrt(2 eps) dW``; ``eps = 0`` is the probability-flow ODE; no retraining, the run's own
solver and steps), measures ``kl_density`` (the evaluator's k-NN estimate, its bias at
KL = 0 subtracted), and measures the networks' integrated squared errors ``E_b``, ``E_s``
against the exact fields, which predict the KL bound's minimiser ``eps* = (E_b/E_s)^(1/2)``.

Writes ``<out>/si_epsilon_star.png`` (KL against eps per run with its predicted eps*, and
the 2D cross-section error of the ODE and of the best SDE: the KDE of generated draws minus
that of exact target draws, on the plane of two mixture means) and
``<out>/si_epsilon_star.json``; prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

EPSILONS = (0.0, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)


def measure(run_dir: Path, epsilons, n: int, seed: int, schedule: str | None = None) -> dict:
    """KL per epsilon, field errors and the draws (for the cross-section) of one run."""
    from sbrun import load_run
    from sbrun.metrics.interpolant_truth import field_errors
    from sbrun.metrics.kl import kl_to_density
    from sbrun.solvers import time_grid

    run = load_run(run_dir)
    c = run.components
    method, tgt = c.method, c.problem.target
    if not hasattr(method, "set_epsilon") or not hasattr(tgt, "means"):
        raise SystemExit(f"{run_dir}: needs a stochastic-interpolant run on data=gmm_highdim")
    w, mu, sd = tgt.weights, tgt.means, tgt.std
    method.schedule = schedule or method.schedule  # epsilon(t): constant or vanishing
    g = torch.Generator().manual_seed(seed)
    errors = field_errors(method, c.nets, w, mu, sd, n=4 * n, generator=g)
    inner = field_errors(method, c.nets, w, mu, sd, n=4 * n, generator=g, t_range=(0.1, 0.9))
    errors.update({f"{k}_inner": v for k, v in inner.items()})  # without the ends
    ref = tgt.sample(n, torch.Generator().manual_seed(seed + 1)).double()
    bias = kl_to_density(ref, tgt.log_prob)  # the estimator's value at KL = 0
    x0 = torch.randn(n, mu.shape[1], generator=torch.Generator().manual_seed(seed + 2))
    grid = time_grid(int(run.config.solver.steps))
    rows, draws = [], {}
    for eps in epsilons:
        method.set_epsilon(eps)
        with torch.no_grad():
            res = method.transport(c.nets, x0, c.solver, grid,
                                   generator=torch.Generator().manual_seed(seed + 3))
        x1 = res.x.detach().double()
        kl = kl_to_density(x1, tgt.log_prob) - bias
        rows.append({"epsilon": eps, "kl_density": kl})
        draws[eps] = x1
    cfg = run.config
    return {"run": str(run_dir), "steps": int(cfg.trainer.steps), "rows": rows, **errors,
            "label": f"{cfg.trainer.steps} train steps, eps(t) {method.schedule}",
            "schedule": method.schedule, "draws": draws, "target": tgt,
            "title": (f"stochastic-interpolant ({cfg.method.gamma}, {cfg.method.score_param}), "
                      f"{cfg.data.name} d={mu.shape[1]}, {cfg.solver.name} x {cfg.solver.steps}")}


def run_dirs(path: Path) -> list[Path]:
    """``[path]`` for a run, its job directories for a sweep (sbrun's multirun layout)."""
    if (path / ".hydra" / "config.yaml").is_file():
        return [path]
    jobs = sorted(p.parent.parent for p in path.glob("*/.hydra/config.yaml"))
    if not jobs:
        raise SystemExit(f"{path}: neither an sbrun run nor a sweep of runs")
    return jobs


def flat_metrics(results: list[dict]) -> dict:
    """Per training length: predicted ``eps_star``, measured ``eps_argmin`` (over eps > 0),
    ``kl_min`` there and ``kl_ode`` (eps = 0), keyed ``<name>_<steps>``."""
    out = {}
    for r in results:
        sde = [row for row in r["rows"] if row["epsilon"] > 0]
        ode = [row["kl_density"] for row in r["rows"] if row["epsilon"] == 0]
        best = min(sde, key=lambda row: row["kl_density"])
        out.update({f"eps_star_{r['steps']}": r["eps_star"], f"eps_argmin_{r['steps']}": best["epsilon"],
                    f"kl_min_{r['steps']}": best["kl_density"]})
        if ode:
            out[f"kl_ode_{r['steps']}"] = ode[0]
    return out


def _cross_section(target, draws) -> tuple[np.ndarray, tuple]:
    """KDE of ``draws`` minus the KDE of as many exact target draws (same bandwidth), on
    the plane of the first two mixture means: ``(grid values, extent)``."""
    from scipy.stats import gaussian_kde

    mu = target.means
    basis = torch.linalg.qr(mu[:2].T)[0].T  # (2, d) orthonormal
    pm = (mu @ basis.T).numpy()
    lo, hi = pm.min(0) - 3, pm.max(0) + 3
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 120), np.linspace(lo[1], hi[1], 120))
    pts = np.stack([gx.ravel(), gy.ravel()], 1)
    ref = target.sample(draws.shape[0], torch.Generator().manual_seed(7)).double()
    kde_ref = gaussian_kde((ref @ basis.T).numpy().T)  # the same bandwidth for both:
    kde = gaussian_kde((draws @ basis.T).numpy().T, bw_method=kde_ref.factor)
    diff = (kde(pts.T) - kde_ref(pts.T)).reshape(gx.shape)  # the smoothing bias cancels
    return diff, (lo[0], hi[0], lo[1], hi[1])


def figure(results: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), gridspec_kw={"width_ratios": [1.4, 1, 1]})
    ax = axes[0]
    for r, colour in zip(results, plt.cm.viridis(np.linspace(0, 0.8, len(results)))):
        eps = [max(row["epsilon"], 0.1) for row in r["rows"]]  # the ODE drawn at 0.1
        ax.plot(eps, [row["kl_density"] for row in r["rows"]], "o-", color=colour, label=r["label"])
        if r["schedule"] == "constant":  # the bound's minimiser is for a constant eps
            ax.axvline(r["eps_star"], color=colour, ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("epsilon (diffusion level; leftmost point: ODE, eps = 0)")
    ax.set_ylabel("kl_density (nats)")
    ax.set_title("KL(model || target) vs epsilon; dashed: predicted eps* = (E_b/E_s)^1/2", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    last = results[-1]
    best = min((row for row in last["rows"] if row["epsilon"] > 0), key=lambda row: row["kl_density"])
    panels = {eps: _cross_section(last["target"], last["draws"][eps]) for eps in (0.0, best["epsilon"])}
    lim = max(float(np.abs(d).max()) for d, _ in panels.values()) or 1.0  # one colour scale
    for a, (eps, (diff, extent)) in zip(axes[1:], panels.items()):
        kl = next(row["kl_density"] for row in last["rows"] if row["epsilon"] == eps)
        name = "ODE" if eps == 0 else f"SDE eps={eps:g}"
        im = a.imshow(diff, origin="lower", extent=extent, cmap="RdBu_r", vmin=-lim, vmax=lim)
        a.set_title(f"{name} ({last['steps']} steps): KDE(model) - KDE(target), KL {kl:.2f}", fontsize=9)
        fig.colorbar(im, ax=a, fraction=0.046)
    fig.suptitle(last["title"], fontsize=10)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="runs, or a sweep directory of runs")
    p.add_argument("--epsilons", nargs="+", type=float, default=list(EPSILONS))
    p.add_argument("--n", type=int, default=2000, help="generated draws per epsilon")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--schedule", choices=("constant", "vanishing"), default=None,
                   help="epsilon(t) to sample with (default: the run's)")
    p.add_argument("--out", type=Path, default=None, help="default: the last argument")
    p.add_argument("--metrics", type=Path, default=None,
                   help="also write flat numbers (eps_star_<steps>, eps_argmin_<steps>, kl_min_<steps>, "
                        "kl_ode_<steps>) to this JSON file (reproduce_figures reads post_metrics.json)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    runs = [j for r in args.runs for j in run_dirs(r)]
    results = sorted((measure(r, args.epsilons, args.n, args.seed, args.schedule) for r in runs),
                     key=lambda r: r["steps"])
    out = args.out or args.runs[-1]
    out.mkdir(parents=True, exist_ok=True)
    for r in results:
        best = min(r["rows"], key=lambda row: row["kl_density"])
        print(f"{r['run']} ({r['label']}): E_b {r['E_b']:.4g}, E_s {r['E_s']:.4g}, eps* "
              f"{r['eps_star']:.3g} (t in [0.1, 0.9]: E_b {r['E_b_inner']:.4g}, E_s "
              f"{r['E_s_inner']:.4g}, eps* {r['eps_star_inner']:.3g}); measured argmin "
              f"{best['epsilon']:g}" + ("" if r["schedule"] == "constant" else
                                        " (eps* is the bound's for a constant eps)"))
        for row in r["rows"]:
            print(f"  eps={row['epsilon']:g}: kl_density {row['kl_density']:.3f}")
    keep = ("run", "steps", "label", "schedule", "E_b", "E_s", "eps_star", "E_b_inner",
            "E_s_inner", "eps_star_inner", "rows")
    (out / "si_epsilon_star.json").write_text(
        json.dumps([{k: r[k] for k in keep} for r in results], indent=1))
    figure(results).savefig(out / "si_epsilon_star.png", dpi=110)
    if args.metrics:
        args.metrics.write_text(json.dumps(flat_metrics(results), indent=1))
    print(out / "si_epsilon_star.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
