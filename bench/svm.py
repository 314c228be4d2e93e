"""Benchmark: engine.evaluate.LinearSVM against sklearn SVC(kernel="linear") on ModelNet40-sized features.

    python -m bench.svm                      # 9,840 x 2,048 train, 2,468 test, 40 classes; reference included
    python -m bench.svm --skip-reference     # ours only (the reference takes ~0.5 min or more)

Features are synthetic but shaped like frozen DGCNN features: non-negative (ReLU of a random projection of a
low-dimensional class-clustered latent), imbalanced classes like ModelNet40, confusable class pairs so that a
linear SVM reaches roughly 85-90 %, not 100 %, and C matters (see `make_features`). Both models see the same
float32 features. Target: our fit +
score <= 20 s on 2 cores, accuracy within +-0.5 points of the reference.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
from sklearn.svm import SVC  # imported before any timing: the first import costs ~1 s

from engine.evaluate import LinearSVM

TARGET_SECONDS = 20.0
TARGET_POINTS = 0.5


def make_features(n_train: int, n_test: int, dim: int, classes: int, seed: int = 0, latent: int = 32,
                  noise: float = 0.9, confuse: float = 0.08):
    """Synthetic frozen features: (train_x, train_y, test_x, test_y), float32 / int64.

    A sample of class c is a ReLU of a random projection of a latent point near c's centre, plus a little
    per-dimension noise. A fraction `confuse` of samples is drawn near the centre of a partner class instead
    (like ModelNet40's desk/table, flower pot/plant/vase): the training set stays nearly, not fully, separable,
    some dual coefficients reach C (C matters, as with real features), and test accuracy lands near 85-90 %.
    """
    rng = np.random.default_rng(seed)
    weights = rng.gamma(1.0, 1.0, classes) + 0.15  # ModelNet40-like imbalance
    weights /= weights.sum()
    centres = rng.normal(0.0, 1.0, (classes, latent))
    proj = rng.normal(0.0, 1.0 / np.sqrt(latent), (latent, dim))
    bias = rng.normal(-0.3, 0.3, dim)
    partner = np.arange(classes) ^ 1
    partner[partner >= classes] = classes - 1

    def draw(n):
        y = rng.choice(classes, n, p=weights)
        source = np.where(rng.random(n) < confuse, partner[y], y)
        z = centres[source] + noise * rng.normal(0.0, 1.0, (n, latent))
        h = z @ proj + bias + 0.3 * rng.normal(0.0, 1.0, (n, dim))
        return np.maximum(h, 0.0).astype(np.float32), y.astype(np.int64)

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    return train_x, train_y, test_x, test_y


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-train", type=int, default=9840)
    parser.add_argument("--n-test", type=int, default=2468)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--classes", type=int, default=40)
    parser.add_argument("--C", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-reference", action="store_true", help="do not run sklearn SVC(kernel='linear')")
    args = parser.parse_args(argv)

    print(f"machine: {os.cpu_count()} CPUs, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    train_x, train_y, test_x, test_y = make_features(args.n_train, args.n_test, args.dim, args.classes, args.seed)
    print(f"features: train {train_x.shape}, test {test_x.shape}, {args.classes} classes, C={args.C}, "
          f"class sizes {np.bincount(train_y).min()}..{np.bincount(train_y).max()}")

    start = time.perf_counter()
    ours = LinearSVM(C=args.C).fit(train_x, train_y)
    fit_s = time.perf_counter() - start
    ours_pred = ours.predict(test_x)
    ours_s = time.perf_counter() - start
    ours_acc = float(np.mean(ours_pred == test_y))
    bounded = float(np.mean(np.isclose(np.abs(ours.dual_coef_).max(0), args.C, rtol=1e-6)))
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"ours     LinearSVM ({ours.method_used_}): fit {fit_s:.2f} s + score {ours_s - fit_s:.2f} s = "
          f"{ours_s:.2f} s, accuracy {100 * ours_acc:.2f} %, peak RSS {peak_gib:.2f} GiB; "
          f"{len(ours.support_)} support vectors, {100 * bounded:.0f} % of them at the bound C")
    ok_time = ours_s <= TARGET_SECONDS

    if args.skip_reference:
        print(f"target: <= {TARGET_SECONDS:.0f} s: {'met' if ok_time else 'MISSED'}; accuracy: reference skipped")
        return

    print(f"machine: load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} before the reference")
    start = time.perf_counter()
    ref = SVC(kernel="linear", C=args.C).fit(train_x, train_y)
    ref_fit_s = time.perf_counter() - start
    ref_pred = ref.predict(test_x)
    ref_s = time.perf_counter() - start
    ref_acc = float(np.mean(ref_pred == test_y))
    diff = 100 * (ours_acc - ref_acc)
    print(f"reference SVC(kernel='linear'): fit {ref_fit_s:.2f} s + score {ref_s - ref_fit_s:.2f} s = "
          f"{ref_s:.2f} s, accuracy {100 * ref_acc:.2f} %")
    print(f"speed-up {ref_s / ours_s:.1f}x; accuracy difference {diff:+.2f} points; "
          f"identical predictions on {100 * np.mean(ours_pred == ref_pred):.2f} % of the test set")
    ok_acc = abs(diff) <= TARGET_POINTS
    print(f"target: <= {TARGET_SECONDS:.0f} s: {'met' if ok_time else 'MISSED'}; "
          f"+-{TARGET_POINTS} points: {'met' if ok_acc else 'MISSED'}")
    print(f"machine: load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} after")


if __name__ == "__main__":
    main()
