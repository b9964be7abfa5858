"""Numbers behind two seed-001 figures of ``diffusion_figures.py forward-reverse``.

* VE vs VP: the same data noised by the variance-exploding and the variance-preserving
  SDE (``sbrun.sde``, built from ``conf/sde/ve.yaml`` / ``vp.yaml``, or the run's own SDE
  of that name): draws of the exact marginals ``N(alpha_s x0, sigma_s^2 I)``, forward
  paths by Euler–Maruyama on the SDE's own drift and diffusion, and the closed-form stds.
* The exact NLL of held-out points by the probability-flow ODE, one row per likelihood
  solver: ``SCHEME:TOL`` for an adaptive scheme (``dopri5:1e-5``: ``rtol = atol = 1e-5``),
  ``SCHEME:STEPS`` for a fixed-step one (``rk4:25``), with NFE and seconds.
"""

from __future__ import annotations

import math
import time

import torch
from omegaconf import DictConfig, OmegaConf

from sbrun.config import CONF_DIR
from sbrun.solvers.ode import FIXED_SCHEMES

VE_VP_TIMES = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
NLL_SOLVERS = ("dopri5:1e-3", "dopri5:1e-5", "euler:20", "euler:100", "heun:10", "heun:50",
               "rk4:5", "rk4:25", "rk4:100")
NLL_REFERENCE = "dopri5:1e-5"


# -- VE vs VP ---------------------------------------------------------------------------
def noising_sdes(run_sde: DictConfig | None = None) -> dict:
    """``{"ve": VE, "vp": VP}`` from ``conf/sde``; the run's own SDE config where it is one."""
    from sbrun.pipeline.build import make

    out = {}
    for name, target in (("ve", "sbrun.sde.VE"), ("vp", "sbrun.sde.VP")):
        own = run_sde is not None and run_sde.get("_target_") == target
        out[name] = make("sde", run_sde if own else OmegaConf.load(CONF_DIR / "sde" / f"{name}.yaml"))
    return out


def sde_label(sde) -> str:
    """``"VE: sigma_min=0.01, sigma_max=5"``: the SDE and its parameters."""
    if sde.name == "ve":
        return f"VE: sigma_min={sde.sigma_min:g}, sigma_max={sde.sigma_max:g}"
    if hasattr(sde, "beta_min"):  # VP, sub-VP
        return (f"{sde.name.upper()} ({sde.schedule}): beta_min={sde.beta_min:g}, "
                f"beta_max={sde.beta_max:g}")
    return f"{sde.name}: " + ", ".join(f"{k}={v:g}" for k, v in vars(sde).items()
                                      if isinstance(v, float) and k != "s_min")


def std_curves(sde, s: torch.Tensor, data_var: float) -> tuple[torch.Tensor, ...]:
    """``(alpha_s, sigma_s, sqrt(alpha_s^2 data_var + sigma_s^2))`` at noising times
    ``s: (k,)``: the signal scale, the noise std and the per-coordinate std of ``X_s`` for
    data of variance ``data_var``."""
    s = torch.as_tensor(s, dtype=torch.float64)
    alpha, var = sde.log_alpha(s).exp(), sde.var(s)
    return alpha, var.sqrt(), (alpha**2 * data_var + var).sqrt()


def noised(sde, x0: torch.Tensor, s_cols, generator: torch.Generator | None = None):
    """Draws of ``X_s | X_0 = x0`` (the exact marginal) at every ``s`` -> ``(len(s), n, d)``."""
    n = x0.shape[0]
    return torch.stack([sde.marginal(torch.full((n,), float(s), dtype=torch.float64), x0).sample(
        generator=generator) for s in s_cols])


def forward_paths(sde, x0: torch.Tensor, steps: int, generator: torch.Generator | None = None):
    """Euler–Maruyama paths of ``dX = f(s) X ds + g(s) dW`` from ``x0`` over ``s in [0, 1]``
    -> ``(s_grid (steps + 1,), (n, steps + 1, d))``."""
    from sbrun.solvers import get_solver

    grid = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    res = get_solver("euler_maruyama")(sde.drift, x0, grid, diffusion=sde.diffusion,
                                       generator=generator, keep=len(x0))
    return grid, res.path


def ve_vs_vp(x0: torch.Tensor, sdes: dict, data_name: str, n_paths: int = 8, steps: int = 500,
             seed: int = 0):
    """The VE-vs-VP figure of data ``x0: (n, 2)`` (float64) under ``sdes`` (label -> SDE)."""
    from sbrun.plots.diffusion import ve_vs_vp as fig_ve_vp

    s_cols = torch.tensor(VE_VP_TIMES, dtype=torch.float64)
    s_fine = torch.linspace(0.0, 1.0, 201, dtype=torch.float64)
    data_var = float(x0.var(0).mean())
    clouds, paths, curves = {}, {}, {}
    g = torch.Generator().manual_seed(seed + 1001)  # not the held-out data's own seed
    for sde in sdes.values():
        label = sde_label(sde)
        clouds[label] = noised(sde, x0, s_cols, g)
        paths[label] = forward_paths(sde, x0[:n_paths], steps, g)
        curves[label] = (s_fine, *std_curves(sde, s_fine, data_var))
    title = (f"{data_name} noised by VE and VP SDEs: exact marginals N(alpha_s x0, sigma_s^2 I); "
             f"paths: euler_maruyama x {steps} (noising time s, data at 0)")
    return fig_ve_vp(s_cols, clouds, paths, curves, title)


# -- NLL per solver -------------------------------------------------------------------
def parse_nll(spec: str) -> dict:
    """``"dopri5:1e-5"`` -> ``{scheme, rtol, atol}``; ``"rk4:25"`` -> ``{scheme, steps}``."""
    scheme, value = spec.split(":")
    if scheme in FIXED_SCHEMES:
        return {"scheme": scheme, "steps": int(value)}
    return {"scheme": scheme, "rtol": float(value), "atol": float(value)}


def metric_key(spec: str) -> str:
    """``"dopri5:1e-5"`` -> ``nll_dopri5_1em5``; ``"rk4:25"`` -> ``nll_rk4_25`` (names an
    ``# Expected:`` check can read)."""
    return "nll_" + spec.replace(":", "_").replace("-", "m").replace(".", "p")


def nll_table(method, nets, x: torch.Tensor, specs=NLL_SOLVERS,
              reference: str = NLL_REFERENCE) -> list[dict]:
    """The exact NLL (nats per point) of ``x`` by ``method.log_likelihood`` per solver spec:
    rows with ``solver, scheme, nll, nll_se, dnll`` (against ``reference`` when listed),
    ``nfe``, ``seconds`` (wall) and ``cpu_seconds``."""
    rows = []
    for spec in specs:
        wall, cpu = time.perf_counter(), time.process_time()
        ll = method.log_likelihood(nets, x, torch.Generator().manual_seed(0), **parse_nll(spec))
        nll = -ll.logp.double()
        rows.append({"solver": spec, **parse_nll(spec), "nll": float(nll.mean()),
                     "nll_se": float(nll.std() / math.sqrt(len(nll))), "nfe": ll.nfe,
                     "seconds": time.perf_counter() - wall,
                     "cpu_seconds": time.process_time() - cpu})
    ref = next((r["nll"] for r in rows if r["solver"] == reference), rows[-1]["nll"])
    for r in rows:
        r["dnll"] = r["nll"] - ref
    return rows


def markdown(rows: list[dict]) -> str:
    """The NLL table as Markdown."""
    lines = ["| solver | NLL (nats) | vs reference | NFE | seconds | CPU seconds |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['solver']} | {r['nll']:.4f} ± {r['nll_se']:.3f} | {r['dnll']:+.4f} | "
              f"{r['nfe']} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} |" for r in rows]
    return "\n".join(lines)
