"""Speed of the downstream scripts' frozen features on the CPU: clouds/s with reading, and what the BatchNorm
calibration costs against the extraction.

    python -m bench.features                        # 480 binary PCD clouds of 1,024 points, full DGCNN
    python -m bench.features --clouds 960 --runs 5

A class-folder tree of --clouds binary PCD files (1,024 points each, as the ModelNet10 release this repo
was measured on) is written to a temporary folder and prepared once. A run is what the classification script
does for one split: build the dataset from its cache, and extract the 2048-d features of a randomly initialised
DGCNN (k=20) through `engine.evaluate.extract_features` (threads of one torch thread, 4 clouds each). The same
features are extracted the way the scripts did before, as the baseline in the same run: one process, batches
of 64 through torch's own threads.

The calibration: `engine.evaluate.calibrated_batchnorm` on the seeded subset of --calibration-shapes shapes the
scripts use (batches of 16, training-mode forward passes). Its cost is printed as a fraction of the
extraction of a whole dataset, for ModelNet10 (4,899 shapes) and ModelNet40 (12,311): the target is at most a
quarter. The target for the extraction is 25 clouds/s on 2 cores with reading.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from datasets.class_folder import ClassFolder
from datasets.formats import write_pcd
from engine.evaluate import calibrated_batchnorm, calibration_subset, extract_features
from engine.parallel import available_cores, keep_freed_memory, torch_threads
from models.build import build_model

TARGET = 25.0  # clouds/s
DATASETS = {"ModelNet10": 4_899, "ModelNet40": 12_311}


def write_tree(root: Path, clouds: int, points: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for index in range(clouds):
        split = "test" if index < 2 else "train"
        direction = rng.standard_normal((points, 3))
        xyz = direction / np.linalg.norm(direction, axis=1, keepdims=True) * rng.uniform(5, 50, 3) + rng.normal(0, 9, 3)
        folder = root / f"class_{index % 2}" / split
        folder.mkdir(parents=True, exist_ok=True)
        write_pcd(folder / f"cloud_{index:05d}.pcd", xyz, encoding="binary")


def one_process_baseline(encoder, dataset) -> float:
    """Seconds for the features as before: one process, batches of 64 through torch's intra-op threads."""
    started = time.perf_counter()
    with torch.inference_mode(), torch_threads(available_cores()):
        for batch in DataLoader(dataset, batch_size=64):
            encoder(batch["points"])
    return time.perf_counter() - started


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.features", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clouds", type=int, default=480)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calibration-shapes", type=int, default=256)
    args = parser.parse_args(argv)
    keep_freed_memory()
    torch.manual_seed(0)
    encoder = build_model({"name": "dgcnn", "k": 20, "emb_dims": 1024}).eval()
    ours, baseline, calibration = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp:
        root = Path(tmp) / "Clouds"
        write_tree(root, args.clouds + 2, args.points)
        dataset = ClassFolder(root, "trainval", num_points=args.points, progress=False)
        extract_features(encoder, DataLoader(dataset, batch_size=64), "cpu")  # warm-up
        for run in range(args.runs):
            started = time.perf_counter()
            dataset = ClassFolder(root, "trainval", num_points=args.points, progress=False)
            features, _ = extract_features(encoder, DataLoader(dataset, batch_size=64), "cpu")
            ours.append(time.perf_counter() - started)
            baseline.append(one_process_baseline(encoder, dataset))
            subset = calibration_subset(dataset, args.calibration_shapes, seed=run)
            started = time.perf_counter()
            calibrated_batchnorm(encoder, DataLoader(subset, batch_size=16), "cpu")
            calibration.append((time.perf_counter() - started) / len(subset))
            print(f"run {run + 1}: features {len(features) / ours[-1]:.1f} clouds/s (one-process baseline "
                  f"{len(features) / baseline[-1]:.1f}), calibration {1e3 * calibration[-1]:.0f} ms per shape",
                  flush=True)
    n = args.clouds
    rate, base = n / statistics.median(ours), n / statistics.median(baseline)
    per_shape = statistics.median(calibration)
    print(f"\nfrozen features, full DGCNN (k=20, 2048-d), {args.points} points, {n} binary PCD files, "
          f"{available_cores()} cores, median of {args.runs} runs, reading from the cache included:")
    print(f"  ours      {rate:6.1f} clouds/s -> ratio to the target of {TARGET:g}: {rate / TARGET:.2f}")
    print(f"  baseline  {base:6.1f} clouds/s (one process, batches of 64) -> ours / baseline {rate / base:.2f}")
    cost = {}
    for name, size in DATASETS.items():
        shapes = min(args.calibration_shapes, size)
        cost[name] = shapes * per_shape / (size / rate)
        print(f"  BatchNorm calibration on {shapes} shapes, {name} ({size} shapes): {shapes * per_shape:.0f} s "
              f"against {size / rate:.0f} s of extraction = {cost[name]:.2f} of it (target <= 0.25)")
    return {"clouds_per_s": rate, "baseline_clouds_per_s": base, "ratio": rate / TARGET,
            "calibration_s_per_shape": per_shape, "calibration_cost": cost}


if __name__ == "__main__":
    main()
