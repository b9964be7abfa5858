"""Which digit a multimarginal MNIST run makes at each class vertex (seed 004, slide 40).

    sbrun +experiment=mm_mnist_classes_cpu hydra.run.dir=<run>
    python scripts/multimarginal_classes.py <run> [--n 200] [--classifier <clf.pt>]

Draws ``--n`` points of the run's Gaussian marginal ``x_0``, sends the same draws along the
straight edge to every digit's vertex of the simplex (RK4 on the run's ``solver.steps``),
and labels what arrives with the FID classifier (``--classifier``, else the one sbrun
trains once on the MNIST training set and caches:
:func:`sbrun.metrics.classifier.cached_classifier`). Writes
``<run>/post_metrics.json``: ``class_acc_<digit>`` (the fraction labelled as the vertex's
digit), ``class_acc`` (their mean) and ``min_class_acc``; prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


def classifier_path(run, given: str | None) -> str:
    """``given``, else the cached MNIST FID classifier (trained on first use)."""
    if given:
        return given
    from sbrun.data.images import load_mnist
    from sbrun.data.multi_problems import default_data_root
    from sbrun.metrics.classifier import cached_classifier

    return str(cached_classifier(load_mnist(run.config.data.get("root") or default_data_root())))


@torch.no_grad()
def vertex_accuracy(run, classifier, n: int, seed: int = 0) -> dict[str, float]:
    """``class_acc_<digit>`` of the same Gaussian draws moved to every digit's vertex."""
    from sbrun.methods.simplex import LinePath, vertex
    from sbrun.metrics.classes import class_accuracy
    from sbrun.solvers import time_grid

    mm, nets = run.components.method, run.components.nets
    if getattr(mm, "gaussian_index", None) is None or "classes" not in mm.problem.extra:
        raise SystemExit(f"{run.run_dir}: needs a multimarginal run on data=mnist_classes "
                         "with method.include_gaussian=true")
    start = mm.gaussian_index
    x = mm.marginals[start].heldout(n, seed)
    grid = time_grid(int(run.config.solver.steps))  # RK4 on the run's number of steps
    digits = [int(d) for d in mm.problem.extra["classes"]]
    moved = torch.cat([mm.transport_along(nets, x, LinePath(vertex(mm.k, start), vertex(mm.k, k)),
                                          grid=grid).x.cpu() for k in range(len(digits))])
    out = class_accuracy(moved, torch.tensor(digits).repeat_interleave(n), classifier)
    out["min_class_acc"] = min(out[f"class_acc_{d}"] for d in digits)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a finished multimarginal run on data=mnist_classes")
    p.add_argument("--n", type=int, default=200, help="Gaussian draws sent to every vertex")
    p.add_argument("--classifier", default=None, help="an FID classifier file (scripts/train_classifier.py)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.n < 1:
        raise SystemExit("--n must be >= 1")
    from sbrun import load_run
    from sbrun.metrics.classifier import load_classifier

    run = load_run(args.run)
    clf = load_classifier(classifier_path(run, args.classifier))
    acc = vertex_accuracy(run, clf, args.n, args.seed)
    post = args.run / "post_metrics.json"
    old = json.loads(post.read_text()) if post.is_file() else {}
    post.write_text(json.dumps({**old, **acc}, indent=2))
    for k, v in acc.items():
        print(f"{k:>16}  {v:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
