"""Train the small CNN whose features give ``fid_classifier``, and save it with its test accuracy.

    python scripts/train_classifier.py --dataset mnist --root <data root> --out classifiers/mnist.pt
    sbrun data=mnist eval.fid=classifier eval.classifier_path=classifiers/mnist.pt ...

``--root`` defaults to ``$SBRUN_DATA_ROOT``. A few epochs on MNIST take a couple of minutes
on 2 CPU cores (~99 % test accuracy). A classifier is specific to its data set: use the
target's (``mnist`` for ``emnist2mnist`` and ``fashion2mnist``).
"""

from __future__ import annotations

import argparse
import time

import torch

from sbrun.data.images import LOADERS
from sbrun.metrics.classifier import fit_classifier, save_classifier


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion_mnist", "emnist"])
    p.add_argument("--root", default=None, help="data root (default: $SBRUN_DATA_ROOT)")
    p.add_argument("--out", required=True, help="where to save the classifier (.pt)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--max-train", type=int, default=None, help="cap the training images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    data = LOADERS[args.dataset](root=args.root, max_train=args.max_train, seed=args.seed)
    print(f"{data.name}: train {tuple(data.train.shape)}, test {tuple(data.test.shape)}")
    t0 = time.perf_counter()
    model, acc = fit_classifier(data, epochs=args.epochs, batch_size=args.batch_size,
                                lr=args.lr, seed=args.seed, log=print)
    save_classifier(model, args.out, acc, data.name)
    print(f"test accuracy {acc:.4f} ({len(data.test)} images), "
          f"{time.perf_counter() - t0:.0f} s; saved {args.out}")
    return acc


if __name__ == "__main__":
    main()
