"""FID against the DSB iteration, with the slide's baseline line (seed 003, MNIST).

    sbrun +experiment=dsb_mnist_cpu data.root=<dir> hydra.run.dir=<run>
    python scripts/dsb_fid_curve.py <run> [--baseline-steps 40] [--metric fid_classifier]

The slide's figure plots the FID of DSB's samples (N = 12) after each IPF iteration next
to a green line, "FID obtained with 1 DSB step and N = 40": a score-based model (IPF
iteration 1 is one) with a finer chain. This script trains that baseline with the run's
own overrides and ``method.ipf_iters=1 method.num_steps=<--baseline-steps>`` into
``<run>/baseline_n<steps>/`` (kept if it finished before), then writes
``<run>/figures/fid_vs_ipf.png`` (the run's metric per IPF iteration and the baseline as a
line) and ``<run>/post_metrics.json`` (``<metric>_baseline``, ``baseline_num_steps``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml


def history(run: Path, metric: str) -> list[dict]:
    """The run's evaluations that carry ``metric`` and an IPF iteration, in order."""
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    out = [{"step": int(r["ipf_iter"]), metric: float(r[metric])} for r in rows
           if "ipf_iter" in r and isinstance(r.get(metric), (int, float))]
    if not out:
        raise SystemExit(f"{run}/metrics.jsonl has no {metric} per IPF iteration "
                         f"(a DSB run with eval.fid set?)")
    return out


def train_baseline(run: Path, steps: int) -> Path:
    """The run's own overrides with one IPF iteration and an ``steps``-step chain."""
    out = run / f"baseline_n{steps}"
    if (out / "metrics.json").is_file():
        return out
    overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text()) or []
    keep = [o for o in overrides
            if not o.lstrip("+~").startswith(("method.ipf_iters=", "method.num_steps="))]
    cmd = [sys.executable, "-m", "sbrun", *keep, "method.ipf_iters=1",
           f"method.num_steps={steps}", f"hydra.run.dir={out}"]
    print("baseline:", " ".join(cmd[2:]), flush=True)
    proc = subprocess.run(cmd, env=os.environ.copy())
    if proc.returncode:
        raise SystemExit(f"the baseline run failed (exit {proc.returncode}); its log is in {out}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a finished DSB run directory with a FID per IPF iteration")
    p.add_argument("--baseline-steps", type=int, default=40, help="N of the baseline chain (slide: 40)")
    p.add_argument("--metric", default="fid_classifier")
    args = p.parse_args(argv)
    if args.baseline_steps < 1:
        raise SystemExit("--baseline-steps must be >= 1")
    rows = history(args.run, args.metric)
    base_dir = train_baseline(args.run, args.baseline_steps)
    base = json.loads((base_dir / "metrics.json").read_text()).get(args.metric)
    if not isinstance(base, (int, float)):
        raise SystemExit(f"{base_dir}/metrics.json has no {args.metric}")

    from sbrun.plots import metric_curves

    cfg = yaml.safe_load((args.run / ".hydra" / "config.yaml").read_text())
    n, k, steps = cfg["method"]["num_steps"], rows[-1]["step"], cfg["trainer"]["steps"]
    label = f"1 IPF iteration, N = {args.baseline_steps} (score-based)"
    title = (f"DSB on {cfg['data'].get('target', 'images')}, N = {n}, {steps} steps per "
             f"half-iteration:\n{args.metric} after 1 to {k} IPF iterations")
    fig = metric_curves(rows, keys=(args.metric,), xlabel="IPF iteration", title=title,
                        baselines={args.metric: (base, label)})
    (args.run / "figures").mkdir(exist_ok=True)
    fig.savefig(args.run / "figures" / "fid_vs_ipf.png", dpi=110)
    post = {f"{args.metric}_baseline": float(base), "baseline_num_steps": args.baseline_steps}
    (args.run / "post_metrics.json").write_text(json.dumps(post, indent=2))
    print(f"{args.metric}: " + ", ".join(f"{r[args.metric]:.1f}" for r in rows)
          + f" after IPF 1..{k}; baseline (N = {args.baseline_steps}) {base:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
