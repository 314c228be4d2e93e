"""How many shapes the BatchNorm calibration of an untrained encoder needs: its statistics and its linear-SVM
accuracy on seeded subsets of the training set, against the calibration on all of it.

    python -m bench.calibration --folder data/ModelNet10                 # a class-folder tree
    python -m bench.calibration --data-root data                         # ModelNet40 (h5)
    python -m bench.calibration --folder data/ModelNet10 --shapes 64 256 1024 --repeats 5 --accuracy 256

A randomly initialised DGCNN (k=20, 2048-d features, seed 0) is calibrated (`engine.evaluate.calibrated_batchnorm`,
batches of 16) on the whole trainval split, then on --repeats seeded subsets of each size in --shapes. For
every BatchNorm channel the subset's running mean is compared with the full one in units of the full standard
deviation, |m_sub - m_all| / s_all, and its variance by |v_sub / v_all - 1|; the table gives the largest over
all channels of all layers, as the median over the repeats. For the sizes in --accuracy (and for all), the
linear SVM (C=0.01 and C=1, no scaling) is fitted on trainval features and scored on the test split, once
per subset seed: the accuracy a subset gives against the full calibration's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader

from datasets import ModelNet40
from datasets.class_folder import ClassFolder
from engine.evaluate import calibrated_batchnorm, calibration_subset, extract_features, linear_svm_accuracy
from engine.parallel import keep_freed_memory
from models.build import build_model


def statistics_of(model) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(m.running_mean.clone(), m.running_var.clone()) for m in model.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def errors(subset, full) -> tuple[float, float]:
    mean = max(float(((ms - mf).abs() / vf.sqrt()).max()) for (ms, _), (mf, vf) in zip(subset, full))
    var = max(float((vs / vf - 1).abs().max()) for (_, vs), (_, vf) in zip(subset, full))
    return mean, var


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.calibration", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--folder", help="a class-folder tree <root>/<class>/{train,test}/")
    source.add_argument("--data-root", help="a data root holding modelnet40_ply_hdf5_2048/")
    parser.add_argument("--shapes", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accuracy", type=int, nargs="*", default=[128, 512],
                        help="subset sizes also scored by the linear SVM (the full calibration always is)")
    args = parser.parse_args(argv)
    keep_freed_memory()
    if args.folder:
        trainval, test = (ClassFolder(args.folder, split, num_points=1024) for split in ("trainval", "test"))
    else:
        trainval, test = (ModelNet40(args.data_root, split, num_points=1024) for split in ("trainval", "test"))
    torch.manual_seed(0)
    encoder = build_model({"name": "dgcnn", "k": 20, "emb_dims": 1024})

    def calibrate(dataset):
        return calibrated_batchnorm(encoder, DataLoader(dataset, batch_size=16), "cpu")

    def accuracy(model) -> dict[str, float]:
        train = extract_features(model, DataLoader(trainval, batch_size=64), "cpu")
        scored = extract_features(model, DataLoader(test, batch_size=64), "cpu")
        return {f"C={c:g}": linear_svm_accuracy(*train, *scored, C=c) for c in (0.01, 1.0)}

    started = time.perf_counter()
    full = calibrate(trainval)
    seconds_per_shape = (time.perf_counter() - started) / len(trainval)
    reference = statistics_of(full)
    print(f"calibrated on all {len(trainval)} trainval shapes ({1e3 * seconds_per_shape:.0f} ms per shape)", flush=True)
    rows = {}
    for shapes in [s for s in args.shapes if s < len(trainval)]:
        found = []
        for repeat in range(args.repeats):
            model = calibrate(calibration_subset(trainval, shapes, seed=repeat))
            found.append((*errors(statistics_of(model), reference),
                          accuracy(model) if shapes in args.accuracy else None))
        rows[shapes] = found
        print(f"{shapes} shapes: mean error {statistics.median(f[0] for f in found):.4f}, variance error "
              f"{statistics.median(f[1] for f in found):.4f}", flush=True)
    full_accuracy = accuracy(full)
    print(f"\nuntrained DGCNN, BatchNorm calibrated on seeded subsets of {len(trainval)} trainval shapes; "
          f"{len(test)} test shapes; median over {args.repeats} subset seeds")
    print("| shapes | max mean error (in std) | max variance error | SVM C=0.01 | SVM C=1 |")
    print("|---|---|---|---|---|")
    for shapes, found in rows.items():
        scores = [f[2] for f in found if f[2] is not None]
        cells = [f"{100 * statistics.median(s[key] for s in scores):.2f} % ({100 * min(s[key] for s in scores):.2f}"
                 f"-{100 * max(s[key] for s in scores):.2f})" if scores else "" for key in ("C=0.01", "C=1")]
        print(f"| {shapes} | {statistics.median(f[0] for f in found):.4f} | {statistics.median(f[1] for f in found):.4f}"
              f" | {cells[0]} | {cells[1]} |")
    print(f"| all {len(trainval)} | 0 | 0 | {100 * full_accuracy['C=0.01']:.2f} % | {100 * full_accuracy['C=1']:.2f} % |")
    return {"rows": rows, "full": full_accuracy, "seconds_per_shape": seconds_per_shape}


if __name__ == "__main__":
    main()
