"""Labels for your clouds: from a fine-tuned classifier, or from a linear SVM fitted on a labelled reference set.

    # a checkpoint of python -m downstream.classification.main_finetune: files, folders, globs
    python -m tools.classify --checkpoint runs/finetune_dgcnn/best.pt scans/ --out predictions.csv
    # frozen features (both files from tools.embed) and a reference set
    python -m tools.embed --checkpoint best.pt --dataset modelnet40:trainval --out reference.npz
    python -m tools.embed --checkpoint best.pt scans/ --out features.npz
    python -m tools.classify --reference reference.npz features.npz --out predictions.csv

With --checkpoint, every file is read and prepared as tools.embed does (the checkpoint's number of points,
unit sphere) and labelled by the classifier's head; the CSV adds the class probability. The SVM is the linear-SVM protocol's (engine.evaluate.LinearSVM: sklearn SVC(kernel="linear") semantics,
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

from datasets.clouds import Preprocessing
from engine.evaluate import LinearSVM
from engine.parallel import ParallelForward, keep_freed_memory
from tools.clouds import expand_inputs
from tools.common import check_device, check_positive, load_features, load_model, same_encoder
from tools.embed import embed_items
from utils.errors import ConfigError, DataError, exit_on_user_error
from utils.files import atomic_write_text


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.classify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="with --reference: one .npz of the clouds to label (tools.embed); "
                                                  "with --checkpoint: files, folders and globs")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--reference", help="a labelled .npz (tools.embed --dataset ...)")
    source.add_argument("--checkpoint", help="a fine-tuned classifier (downstream.classification.main_finetune)")
    parser.add_argument("--svm-c", type=float, default=0.01, help="the SVM's C (default 0.01, as published)")
    parser.add_argument("--points", type=int, help="--checkpoint: points per cloud (default: the checkpoint's)")
    parser.add_argument("--batch-size", type=int, default=4, help="--checkpoint: clouds per forward pass")
    parser.add_argument("--workers", type=int, default=None, help="--checkpoint: model threads (default: one per "
                                                                  "core, at most 8)")
    parser.add_argument("--device", default="cpu", help="--checkpoint: cpu (default), cuda, cuda:N")
    parser.add_argument("--strict", action="store_true", help="--checkpoint: stop at the first unusable file")
    parser.add_argument("--out", help="also write path,label,class_name rows to this CSV")
    args = parser.parse_args(argv)
    if not args.svm_c > 0:
        raise ConfigError("--svm-c: must be > 0")
    if args.reference and len(args.inputs) != 1:
        raise ConfigError("with --reference give one features file (tools.embed's .npz) to label")
    check_positive(args, ("points", "batch_size", "workers"))
    check_device("--device", args.device)
    return args


def write_csv(path: str, header: list[str], rows) -> None:
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())
    print(f"wrote {path}")


def print_labels(paths, labels, names, scores=None) -> None:
    width = max(len(str(p)) for p in paths)
    print(f"{'index':>6}  {'path':<{width}}  class")
    for index, (path, label) in enumerate(zip(paths, labels)):
        score = f"  p={scores[index]:.3f}" if scores is not None else ""
        print(f"{index:>6}  {str(path):<{width}}  {names[label]} ({label}){score}")


def run_classifier(args: argparse.Namespace) -> dict:
    model, info = load_model(args.checkpoint, "classify")
    names = list(info.class_names or [str(i) for i in range(info.outputs)])
    settings = Preprocessing(num_points=args.points or info.num_points or Preprocessing().num_points)
    if info.k is not None and settings.num_points < info.k:
        raise ConfigError(f"--points {settings.num_points}: the backbone's k={info.k} needs at least {info.k}")
    keep_freed_memory()
    files = expand_inputs(args.inputs)
    with ParallelForward(model, args.device, args.workers) as forward:
        logits, kept, problems = embed_items(forward, files, settings.read, batch_size=args.batch_size, readers=2,
                                             strict=args.strict)
    if not kept:
        raise DataError(f"nothing classified: all {len(files)} inputs refused" if files else
                        "nothing classified: no input file found")
    logits = logits.astype(np.float64)
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    predicted, paths = probabilities.argmax(1), [str(files[i]) for i in kept]
    confidence = probabilities[np.arange(len(predicted)), predicted]
    print(f"{info.architecture} of {args.checkpoint} ({len(names)} classes, {settings.num_points} points per cloud); "
          f"skipped {len(problems)}")
    print_labels(paths, predicted, names, confidence)
    if args.out:
        write_csv(args.out, ["path", "label", "class_name", "probability"],
                  ([path, int(label), names[label], f"{p:.6f}"] for path, label, p in zip(paths, predicted, confidence)))
    return {"labels": predicted.tolist(), "class_names": [names[i] for i in predicted], "paths": paths,
            "probabilities": confidence.tolist(), "skipped": len(problems)}


def run(args: argparse.Namespace) -> dict:
    if args.checkpoint:
        return run_classifier(args)
    reference = load_features(args.reference)
    if "labels" not in reference:
        raise DataError(f"{args.reference}: has no labels; embed a labelled set with tools.embed --dataset ...")
    features_path = args.inputs[0]
    data = load_features(features_path)
    same_encoder(reference, args.reference, data, features_path)
    names = [str(name) for name in reference["class_names"]]
    labels = reference["labels"].astype(np.int64)
    present = np.unique(labels)
    if len(present) < 2:
        raise DataError(f"{args.reference}: labels of {len(present)} class only; an SVM needs at least 2")
    svm = LinearSVM(C=args.svm_c).fit(reference["features"], labels)
    predicted = svm.predict(data["features"])
    print(f"linear SVM (C={args.svm_c:g}) fitted on {len(labels)} reference clouds of {len(present)} classes "
          f"({args.reference})")
    print_labels(data["paths"], predicted, names)
    result = {"labels": predicted.tolist(), "class_names": [names[i] for i in predicted]}
    if "labels" in data:
        truth_names = [str(name) for name in data["class_names"]]
        if truth_names != names:
            print(f"note: {features_path} names its classes differently from the reference; no accuracy")
        else:
            result["accuracy"] = float(np.mean(predicted == data["labels"]))
            print(f"accuracy against the labels in {features_path}: {100 * result['accuracy']:.2f} %")
    if args.out:
        write_csv(args.out, ["path", "label", "class_name"],
                  ([str(path), int(label), names[label]] for path, label in zip(data["paths"], predicted)))
    return result


@exit_on_user_error
def main(argv=None) -> dict:
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
