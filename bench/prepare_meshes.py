"""Speed of preparing a class-folder tree of OFF meshes: parse, sample 2,048 points per mesh, write the cache.

    python -m bench.prepare_meshes                  # 120 meshes of 200 to 200,000 faces, 2 processes
    python -m bench.prepare_meshes --meshes 60 --workers 1 --max-faces 500000

The meshes are the synthetic generator's furniture (data/synthetic_gen/class_tree.py: grids of quads, n-gon
caps, in arbitrary units, ModelNet's OFF header quirk in one file of three), each at a resolution drawn so that
its face count is log-uniform between --min-faces and --max-faces: hundreds to 100k+ faces, as ModelNet's CAD
models have. They are written as a ModelNet-style tree in a temporary folder (all in train/, one more in test/),
then `ClassFolder(tree, "trainval")` prepares them from scratch (reading, polygon triangulation, surface
sampling, unit sphere, the cache write) and once more from its cache. The figure is meshes/s of the first
pass, against the target: ModelNet40's 12,311 meshes in under 15 minutes on 2 cores, 13.7 meshes/s.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from data.synthetic_gen.class_tree import object_mesh, write_off
from datasets.class_folder import ClassFolder
from engine.parallel import available_cores

TARGET = 12_311 / (15 * 60)  # meshes/s: ModelNet40 in 15 minutes
FAMILIES = ("chair", "table", "sofa", "monitor", "lamp", "bed", "toilet", "desk")


def faces_of(polygons) -> int:
    return sum(len(group) * (group.shape[1] - 2) for group in polygons)  # triangles after the fans


def write_tree(root: Path, count: int, low: int, high: int, seed: int = 0) -> list[int]:
    """`count` meshes under root/<family>/train/ (and one per class in test/); their triangle counts."""
    rng = np.random.default_rng(seed)
    sizes = []
    for index in range(count):
        family = FAMILIES[index % len(FAMILIES)]
        target = math.exp(rng.uniform(math.log(low), math.log(high)))
        state = rng.integers(2**32)
        probe = faces_of(object_mesh(family, np.random.default_rng(state), 16)[1])
        segments = max(3, round(16 * math.sqrt(target / probe)))
        vertices, polygons = object_mesh(family, np.random.default_rng(state), segments)
        split = "test" if index < len(FAMILIES) else "train"
        write_off(root / family / split / f"{family}_{index:04d}.off", vertices, polygons,
                  counts_on_keyword_line=index % 3 == 0)
        if split == "train":
            sizes.append(faces_of(polygons))
    return sizes


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.prepare_meshes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meshes", type=int, default=120, help="meshes in the train folders (default 120)")
    parser.add_argument("--min-faces", type=int, default=200)
    parser.add_argument("--max-faces", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per core, at most 8)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_meshes_") as tmp:
        root = Path(tmp) / "Bench"
        started = time.perf_counter()
        sizes = write_tree(root, args.meshes + len(FAMILIES), args.min_faces, args.max_faces)
        print(f"wrote {len(sizes)} train meshes in {time.perf_counter() - started:.0f} s: triangles min {min(sizes)}, "
              f"median {int(np.median(sizes))}, mean {int(np.mean(sizes))}, max {max(sizes)}", flush=True)
        started = time.perf_counter()
        dataset = ClassFolder(root, "trainval", num_points=1024, mesh_points=2048, workers=args.workers)
        first = time.perf_counter() - started
        started = time.perf_counter()
        ClassFolder(root, "trainval", num_points=1024, mesh_points=2048, workers=args.workers, progress=False)
        cached = time.perf_counter() - started
        assert len(dataset) == len(sizes) and not dataset.skipped
    workers = args.workers or min(available_cores(), 8)
    rate = len(sizes) / first
    print(f"\nprepared {len(sizes)} OFF meshes ({int(np.mean(sizes))} triangles on average) in {first:.1f} s with "
          f"{workers} processes: {rate:.1f} meshes/s, {sum(sizes) / first / 1e6:.2f} M triangles/s")
    print(f"target {TARGET:.1f} meshes/s (ModelNet40's 12,311 meshes in 15 min) -> ratio {rate / TARGET:.2f}; "
          f"at this rate ModelNet40 takes {12_311 / rate / 60:.1f} min")
    print(f"second run, from the cache: {cached:.2f} s ({len(sizes) / cached:.0f} meshes/s)")
    return {"meshes_per_s": rate, "ratio": rate / TARGET, "cached_s": cached, "mean_triangles": float(np.mean(sizes))}


if __name__ == "__main__":
    main()
