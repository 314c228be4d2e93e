"""Speed of making a pretraining set: tools.make_pretrain_set on meshes of ModelNet's sizes and on 1,024-point clouds.

    python -m bench.render                          # 60 meshes of 200 to 200,000 faces, 300 clouds, 2 processes
    python -m bench.render --meshes 30 --clouds 0 --workers 1

Both at the default settings: 24 views of 137 px per shape (ShapeNetRendering's), 2,048 points per PLY. The
meshes are those of python -m bench.prepare_meshes (the synthetic generator's furniture as OFF files, face counts
log-uniform between --min-faces and --max-faces, as ModelNet's CAD models range); the clouds are 1,024 surface
samples of the same furniture as binary PCD files, like the ModelNet10 clouds this repository measured on. Each
kind is written to a temporary folder, then made into a set from scratch, the whole command timed (reading,
sampling, rendering, PNG encoding, writing), and compared with its target: 4 meshes/s and 20 clouds/s on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.prepare_meshes import FAMILIES, write_tree
from datasets.clouds import read_cloud
from datasets.formats import write_pcd
from engine.parallel import default_workers
from tools import make_pretrain_set

TARGETS = {"meshes": 4.0, "clouds": 20.0}  # shapes/s on 2 cores, 24 views of 137 px


def write_clouds(folder: Path, meshes: list[Path], count: int) -> None:
    """`count` PCD files of 1,024 surface samples, cycling through `meshes` with other sampling seeds."""
    for index in range(count):
        xyz, _ = read_cloud(meshes[index % len(meshes)], mesh_points=1024, seed=index)
        write_pcd(folder / f"cloud_{index:04d}.pcd", xyz * 40 + 3, encoding="binary")  # not centred, not scaled


def timed(inputs: list[str], out: Path, workers: int) -> tuple[float, dict]:
    started = time.perf_counter()
    result = make_pretrain_set.main([*inputs, "--out", str(out), "--workers", str(workers), "--no-progress"])
    return time.perf_counter() - started, result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.render", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meshes", type=int, default=60)
    parser.add_argument("--clouds", type=int, default=300)
    parser.add_argument("--min-faces", type=int, default=200)
    parser.add_argument("--max-faces", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=0, help="processes (default 0: one per core, at most 8)")
    args = parser.parse_args(argv)
    workers = args.workers or default_workers()
    rates = {}
    with tempfile.TemporaryDirectory(prefix="bench_render_") as tmp:
        root = Path(tmp)
        sizes = write_tree(root / "meshes", max(args.meshes, 1) + len(FAMILIES), args.min_faces, args.max_faces)
        meshes = sorted((root / "meshes").glob("*/train/*.off"))
        clouds = root / "clouds"
        clouds.mkdir()
        write_clouds(clouds, meshes, args.clouds)
        print(f"inputs: {len(meshes)} OFF meshes (triangles min {min(sizes)}, median {int(np.median(sizes))}, "
              f"mean {int(np.mean(sizes))}, max {max(sizes)}), {args.clouds} PCD clouds of 1,024 points; "
              f"{workers} process{'es' if workers > 1 else ''}", flush=True)
        for kind, inputs, count in (("meshes", [str(p) for p in meshes[:args.meshes]], args.meshes),
                                    ("clouds", [str(clouds)], args.clouds)):
            if not count:
                continue
            seconds, result = timed(inputs, root / f"set_{kind}", workers)
            assert result["rendered"] == count and not result["skipped"], result
            rates[kind] = count / seconds
            print(f"{kind}: {count} in {seconds:.1f} s = {rates[kind]:.1f} {kind}/s; target {TARGETS[kind]:g} "
                  f"-> ratio {rates[kind] / TARGETS[kind]:.2f}", flush=True)
    return rates


if __name__ == "__main__":
    main()
