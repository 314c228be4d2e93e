"""Labels for your clouds from a linear SVM fitted on a labelled reference set (both embedded by tools.embed).

    python -m tools.embed --checkpoint best.pt --dataset modelnet40:trainval --out reference.npz
    python -m tools.embed --checkpoint best.pt scans/ --out features.npz
    python -m tools.classify --reference reference.npz features.npz --out predictions.csv

The SVM is the linear-SVM protocol's (engine.evaluate.LinearSVM: sklearn SVC(kernel="linear") semantics,
C=0.01 unless --svm-c, no feature scaling), fitted on the reference features each time: nothing is pickled or
stored. Both files must come from the same checkpoint and preprocessing (checked), else their features are
not comparable. When the classified file has labels too (a benchmark split), the accuracy is printed.
"""

from __future__ import annotations

import sys

if not __package__:  # run as a file: the repository root is not importable, say how to run it
    print("error: run this script from the repository root as a module: python -m tools.classify --help",
          file=sys.stderr)
    raise SystemExit(2)

import argparse
import csv
import io

import numpy as np

from engine.evaluate import LinearSVM
from tools.common import load_features, same_encoder
from utils.errors import ConfigError, DataError, exit_on_user_error
from utils.files import atomic_write_text


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.classify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("features", help="a .npz of the clouds to label (tools.embed)")
    parser.add_argument("--reference", required=True, help="a labelled .npz (tools.embed --dataset ...)")
    parser.add_argument("--svm-c", type=float, default=0.01, help="the SVM's C (default 0.01, as published)")
    parser.add_argument("--out", help="also write path,label,class_name rows to this CSV")
    args = parser.parse_args(argv)
    if not args.svm_c > 0:
        raise ConfigError("--svm-c: must be > 0")
    return args


def run(args: argparse.Namespace) -> dict:
    reference = load_features(args.reference)
    if "labels" not in reference:
        raise DataError(f"{args.reference}: has no labels; embed a labelled set with tools.embed --dataset ...")
    data = load_features(args.features)
    same_encoder(reference, args.reference, data, args.features)
    names = [str(name) for name in reference["class_names"]]
    labels = reference["labels"].astype(np.int64)
    present = np.unique(labels)
    if len(present) < 2:
        raise DataError(f"{args.reference}: labels of {len(present)} class only; an SVM needs at least 2")
    svm = LinearSVM(C=args.svm_c).fit(reference["features"], labels)
    predicted = svm.predict(data["features"])
    print(f"linear SVM (C={args.svm_c:g}) fitted on {len(labels)} reference clouds of {len(present)} classes "
          f"({args.reference})")
    width = max(len(str(p)) for p in data["paths"])
    print(f"{'index':>6}  {'path':<{width}}  class")
    for index, (path, label) in enumerate(zip(data["paths"], predicted)):
        print(f"{index:>6}  {str(path):<{width}}  {names[label]} ({label})")
    result = {"labels": predicted.tolist(), "class_names": [names[i] for i in predicted]}
    if "labels" in data:
        truth_names = [str(name) for name in data["class_names"]]
        if truth_names != names:
            print(f"note: {args.features} names its classes differently from the reference; no accuracy")
        else:
            result["accuracy"] = float(np.mean(predicted == data["labels"]))
            print(f"accuracy against the labels in {args.features}: {100 * result['accuracy']:.2f} %")
    if args.out:
        rows = io.StringIO(newline="")
        writer = csv.writer(rows)
        writer.writerow(["path", "label", "class_name"])
        writer.writerows([str(path), int(label), names[label]] for path, label in zip(data["paths"], predicted))
        atomic_write_text(args.out, rows.getvalue())
        print(f"wrote {args.out}")
    return result


@exit_on_user_error
def main(argv=None) -> dict:
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
