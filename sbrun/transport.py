"""``sbrun-transport RUN_DIR points.npz out.npz``: apply a trained run to new points.

Loads the run's resolved config and EMA weights, moves each input point (array ``x``
of shape ``(n, *D)``) from t=0 to t=1 with the run's solver, and writes ``x1``
(``(n, *D)``, or ``(n, repeats, *D)`` with ``--repeats``) and, with ``--paths``,
``path`` (``(n, steps + 1, *D)``) and ``t``. For a class-conditional run, ``--class K``
draws every point of class ``K`` (default: the classes in turn, written as ``y``) and
``--guidance W`` sets the classifier-free guidance (default: the run's);
``--classifier-scale W`` the scale of a run's time-conditioned classifier guidance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sbrun.errors import SbrunError


class Run:
    """A trained run loaded for use: ``.config``, ``.metrics``, ``.transport(x, ...)``.

    ``sbrun.load_run(run_dir)`` returns one (the same code path as ``sbrun-transport``).
    Its checkpoint is read with ``torch.load(weights_only=True)``.
    """

    def __init__(self, run_dir: str | Path, device: str = "cpu", label: int | None = None,
                 guidance: float | None = None, classifier_scale: float | None = None):
        from omegaconf import OmegaConf

        from sbrun.config import upgrade_saved
        from sbrun.errors import ConfigError
        from sbrun.pipeline.build import build
        from sbrun.pipeline.checkpoint import load_checkpoint, load_weights

        self.run_dir = Path(run_dir)
        cfg_path = self.run_dir / ".hydra" / "config.yaml"
        ckpt = self.run_dir / "checkpoints" / "last.pt"
        if not cfg_path.is_file() or not ckpt.is_file():
            raise ConfigError(f"{self.run_dir} is not a finished sbrun run (needs .hydra/config.yaml "
                              "and checkpoints/last.pt)")
        self.config = OmegaConf.load(cfg_path)
        upgrade_saved(self.config)  # a run saved before an option was renamed
        self.config.device = device
        sampler = dict(self.config.get("sampler") or {})  # the class and guidance to draw with
        sampler["label"] = label
        if guidance is not None:
            sampler["guidance"] = guidance
        if classifier_scale is not None:
            sampler["classifier_scale"] = classifier_scale
        self.config.sampler = sampler
        self.components = c = build(self.config)
        state = load_checkpoint(ckpt, map_location=c.device)
        load_weights(c.nets, state["ema"], ckpt)
        if "method" in state:
            c.method.load_state_dict(state["method"])
        c.nets.eval()
        self.step = int(state.get("step", 0))

    @property
    def metrics(self) -> dict:
        """The run's final metrics (``metrics.json``; empty while it has not finished)."""
        import json

        path = self.run_dir / "metrics.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    @property
    def history(self) -> list[dict]:
        """Every evaluation row of ``metrics.jsonl``."""
        import json

        path = self.run_dir / "metrics.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def transport(self, x, repeats: int = 1, direction: str = "forward", steps: int | None = None,
                  paths: bool = False, seed: int = 0) -> dict:
        """Move ``x: (n, *D)`` from t=0 to t=1 (``backward``: t=1 to t=0 where learned).

        Returns numpy arrays: ``x0``, ``x1`` (``(n, *D)``, or ``(n, repeats, *D)`` when
        ``repeats > 1``), ``nfe`` and, with ``paths``, ``path`` and ``t``.
        """
        import numpy as np
        import torch

        from sbrun.errors import ConfigError, DataError
        from sbrun.solvers import time_grid

        c = self.components
        if steps is not None and steps < 1:
            raise ConfigError(f"steps must be >= 1, got {steps} (omit it for the run's "
                              f"{self.config.solver.steps})")
        if repeats < 1:
            raise ConfigError(f"repeats must be >= 1, got {repeats}")
        if repeats > 1 and not c.method.stochastic:
            raise ConfigError(f"repeats={repeats}: this {c.method.name} run transports "
                              "deterministically (x1 is a function of x0), every repeat would be "
                              "the same point")
        if direction not in c.method.directions:
            raise ConfigError(f"{c.method.name} learns directions {c.method.directions}, not {direction}")
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        if x.dim() < 1 or tuple(x.shape[1:]) != tuple(c.problem.shape):
            raise DataError(f"points have shape {tuple(x.shape[1:])} per row, the run was trained "
                            f"on {tuple(c.problem.shape)}")
        grid = time_grid(self.config.solver.steps if steps is None else steps)
        g = torch.Generator().manual_seed(seed)
        xr = x.repeat_interleave(repeats, 0).to(c.device)
        cond, nets, out = c.method.conditioning, c.nets, {"x0": x.numpy()}
        if cond is not None:
            y = cond.sample_labels(x.shape[0])
            nets = cond.sampling_nets(c.nets, y.repeat_interleave(repeats).to(c.device))
            out["y"] = y.numpy()
        with torch.no_grad():
            res = c.method.transport(nets, xr, c.solver, grid, direction=direction,
                                     generator=g, keep=xr.shape[0] if paths else None)
        x1 = res.x.cpu().numpy()
        out["x1"] = x1.reshape(x.shape[0], repeats, *x1.shape[1:]) if repeats > 1 else x1
        if paths and res.path is not None:
            p = res.path.cpu().numpy()
            out["path"] = p.reshape(x.shape[0], repeats, *p.shape[1:]) if repeats > 1 else p
            out["t"] = res.t.cpu().numpy()
        out["nfe"] = np.asarray(res.nfe)
        return out


def load_run(run_dir: str | Path, device: str = "cpu", label: int | None = None,
             guidance: float | None = None, classifier_scale: float | None = None) -> Run:
    """Load a finished (or interrupted) run for notebooks: see :class:`Run` (``label``,
    ``guidance``: the class and guidance scale a class-conditional run samples with;
    ``classifier_scale``: ``sampler.classifier_scale`` of a classifier-guided run)."""
    return Run(run_dir, device, label, guidance, classifier_scale)


def transport_points(run_dir: str | Path, x, steps: int | None = None, repeats: int = 1,
                     paths: bool = False, direction: str = "forward", seed: int = 0,
                     device: str = "cpu", label: int | None = None,
                     guidance: float | None = None, classifier_scale: float | None = None) -> dict:
    """Move ``x: (n, *D)`` with the trained run in ``run_dir``; returns numpy arrays.

    A class-conditional run draws every point of class ``label`` (``None``: classes in
    turn, written as ``y``) with guidance ``guidance`` (``None``: the run's
    ``sampler.guidance``); an unconditional run refuses both.
    """
    return load_run(run_dir, device, label, guidance, classifier_scale).transport(
        x, repeats=repeats, direction=direction, steps=steps, paths=paths, seed=seed)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="sbrun-transport", description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("points", help=".npz with an array `x` of shape (n, *D)")
    p.add_argument("out", help="output .npz (x0, x1[, path, t])")
    p.add_argument("--steps", type=int, default=None, help="solver steps (default: the run's)")
    p.add_argument("--repeats", type=int, default=1, help="samples per input (stochastic methods)")
    p.add_argument("--paths", action="store_true", help="also write full trajectories")
    p.add_argument("--direction", default="forward", choices=["forward", "backward"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--key", default="x")
    p.add_argument("--class", dest="label", type=int, default=None,
                   help="class-conditional runs: the class of every point (default: in turn)")
    p.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance w (default: the run's sampler.guidance)")
    p.add_argument("--classifier-scale", type=float, default=None,
                   help="classifier guidance w (runs with sampler.classifier_path)")
    p.add_argument("--verbose", action="store_true")
    a = p.parse_args(argv)
    try:
        import numpy as np

        from sbrun.data.files import load_npz_array
        from sbrun.errors import ConfigError

        for name in ("steps", "repeats"):  # before any work: nonsense is refused
            value = getattr(a, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name} must be >= 1, got {value}")
        if not Path(a.out).resolve().parent.is_dir():
            raise ConfigError(f"output directory {Path(a.out).parent} does not exist")
        x = load_npz_array(a.points, a.key)
        out = transport_points(a.run_dir, x, a.steps, a.repeats, a.paths, a.direction, a.seed,
                               a.device, a.label, a.guidance, a.classifier_scale)
        np.savez(a.out, **out)
        print(f"wrote {a.out}: x1 {out['x1'].shape}" + (" + path" if "path" in out else ""))
        return 0
    except (SbrunError, OSError) as e:
        if a.verbose:
            raise
        from sbrun.errors import one_line

        print(f"sbrun-transport: error: {one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
