"""Train a time-conditioned classifier p(c | x_t, t) on a run's own noisy path (classifier guidance).

    python scripts/train_noisy_classifier.py --out classifiers/8g_fm.pt data=8gaussians method=flow-matching
    sbrun data=8gaussians method=flow-matching sampler.classifier_path=classifiers/8g_fm.pt \\
        sampler.classifier_scale=2 sampler.label=3

The positional arguments are the run's sbrun overrides: they pick the data set (with its
labels) and the path the classifier is trained on, ``x_t = B_t x1 + S_t eps`` from the
method's own path object (flow matching / stochastic interpolants: the interpolant from
N(0, I); ddpm / score-sde: the noising SDE's marginal). Options that do not change the path
(trainer, solver, model) are irrelevant; a run on another path refuses the file. Prints the
held-out accuracy at several times t (1: clean data) and saves it in the file.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from sbrun.config import compose as sbrun_compose

TIMES = (0.1, 0.5, 0.9, 1.0)


def compose(overrides: list[str]):
    return sbrun_compose(["logger=none", *overrides])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="the classifier file to write (.pt)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--hidden", type=int, default=128, help="MLP width / CNN channels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("overrides", nargs="*", help="the run's sbrun overrides (data=..., method=...)")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if Path(args.out).exists():
        raise SystemExit(f"{args.out} exists; choose another --out (nothing is overwritten)")

    from sbrun.data.conditional import labels_of
    from sbrun.errors import ConfigError
    from sbrun.methods.classifier_guidance import check_method, noisy_draw, path_table
    from sbrun.models.noisy_classifier import fit_noisy_classifier, noisy_accuracy, save_noisy_classifier
    from sbrun.pipeline.build import build

    c = build(compose(args.overrides))
    labels = labels_of(c.problem.target) if c.problem.generative else None
    if labels is None:
        raise ConfigError(f"data={c.problem.name} is not a labelled generative data set")
    check_method(c.method)
    draw = noisy_draw(c.method)
    t0 = time.perf_counter()
    model = fit_noisy_classifier(draw, labels, c.problem.shape, steps=args.steps,
                                 batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                 log=print, hidden=args.hidden)
    acc = noisy_accuracy(model, draw, labels, TIMES, seed=args.seed)
    save_noisy_classifier(model, args.out, path_table(c.method), c.problem.name, acc)
    print(", ".join(f"{k} {v:.3f}" for k, v in acc.items())
          + f"; {time.perf_counter() - t0:.0f} s; saved {args.out}")
    return acc


if __name__ == "__main__":
    main()
