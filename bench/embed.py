"""End-to-end speed of `tools.embed` on the CPU: clouds/s against the matmul-bound limit.

    python -m bench.embed                       # 240 binary PLY files of 1,024 points, full DGCNN, 3 runs
    python -m bench.embed --clouds 480 --runs 5 --workers 1 --batch-size 8

The files are written to a temporary folder first (random ellipsoid surfaces, binary PLY, 1,024 points each),
with a randomly initialised DGCNN (k=20, emb_dims=1024, 2048-d features) saved in train.py's checkpoint
layout. A run is one in-process call of tools.embed's main on that folder, timed from the call to the written
.npz: loading the checkpoint, reading and preprocessing every file, the forward passes, the hash of the
checkpoint and writing the features. The figure is the median over --runs runs (one warm-up run first).

The limit. The forward pass is matmul work: per cloud of N=1,024 points, the four kNN score matrices
(2 N^2 (C+1) flops for C = 3, 64, 64, 128), the EdgeConv projections (2 N C 2C' for 3->64, 64->64,
64->128, 128->256) and the 512->1024 embedding (2 N 512 1024): 1.81 GFLOP, about 2 GFLOP with the
element-wise work. A large fp32 matmul runs at about 120 GFLOP/s on the 2 cores of the reference machine,
so no implementation can exceed about 60 clouds/s there. The script prints the ratio to that limit, and also
times a 2048 x 2048 matmul just before and after each run, with the limit that gives, because on a machine
shared with other jobs the matmul itself runs slower; and the CPU time per cloud, which bounds what the
cores could do if nothing else ran.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement

from models.build import build_model
from tools import embed

REFERENCE_GFLOPS = 120.0   # a large fp32 matmul on the reference machine's 2 cores
REFERENCE_GFLOP_PER_CLOUD = 2.0


def forward_gflop(points: int = 1024, emb_dims: int = 1024) -> float:
    """Matmul flops of one DGCNN forward (k=20 does not enter: the kNN ranks full score rows)."""
    knn = sum(2 * points * points * (c + 1) for c in (3, 64, 64, 128))
    edges = sum(2 * points * c_in * 2 * c_out for c_in, c_out in ((3, 64), (64, 64), (64, 128), (128, 256)))
    return (knn + edges + 2 * points * 512 * emb_dims) / 1e9


def write_clouds(folder: Path, count: int, points: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(count):
        direction = rng.standard_normal((points, 3))
        xyz = direction / np.linalg.norm(direction, axis=1, keepdims=True) * rng.uniform(0.3, 1.0, 3)
        vertex = np.empty(points, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
        vertex["x"], vertex["y"], vertex["z"] = xyz.T
        PlyData([PlyElement.describe(vertex, "vertex")], text=False).write(str(folder / f"cloud_{i:05d}.ply"))


def write_checkpoint(path: Path) -> None:
    torch.manual_seed(0)
    encoder = build_model({"name": "dgcnn", "k": 20, "emb_dims": 1024})
    torch.save({"model": {f"point_encoder.{k}": v for k, v in encoder.state_dict().items()},
                "config": {"model": {"name": "adacrossnet",
                                     "point_backbone": {"name": "dgcnn", "k": 20, "emb_dims": 1024}}}},
               path)


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size ** 3 * repeats / (time.perf_counter() - start) / 1e9


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.embed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clouds", type=int, default=240)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None, help="tools.embed's --batch-size (its default)")
    parser.add_argument("--workers", type=int, default=None, help="tools.embed's --workers (its default)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_embed_") as tmp:
        folder = Path(tmp) / "clouds"
        folder.mkdir()
        write_clouds(folder, args.clouds, args.points)
        checkpoint = Path(tmp) / "dgcnn.pt"
        write_checkpoint(checkpoint)
        command = ["--checkpoint", str(checkpoint), str(folder), "--out", str(Path(tmp) / "features.npz"),
                   "--points", str(args.points)]
        command += ["--batch-size", str(args.batch_size)] if args.batch_size else []
        command += ["--workers", str(args.workers)] if args.workers else []
        embed.main(command)  # warm-up: page cache, oneDNN kernel choice
        rates, cpu, now = [], [], []
        for run in range(args.runs):
            before = matmul_gflops()
            start, start_cpu = time.perf_counter(), time.process_time()
            result = embed.main(command)
            seconds = time.perf_counter() - start
            cpu.append((time.process_time() - start_cpu) / args.clouds)
            now.append((before + matmul_gflops()) / 2)  # what the machine gave a matmul around this run
            assert result["embedded"] == args.clouds
            rates.append(args.clouds / seconds)
            print(f"run {run + 1}: {args.clouds} clouds in {seconds:.2f} s = {rates[-1]:.1f} clouds/s, "
                  f"CPU time {1e3 * cpu[-1]:.0f} ms per cloud; matmul {now[-1]:.0f} GFLOP/s around it", flush=True)
    gflops_now = statistics.median(now)
    local_ratio = statistics.median(r / (g / REFERENCE_GFLOP_PER_CLOUD) for r, g in zip(rates, now))
    counted = forward_gflop(args.points)
    rate = statistics.median(rates)
    reference_limit = REFERENCE_GFLOPS / REFERENCE_GFLOP_PER_CLOUD
    print(f"\ntools.embed, full DGCNN (k=20, 2048-d), {args.points} points, {args.clouds} binary PLY files, "
          f"{torch.get_num_threads()} cores: median {rate:.1f} clouds/s over {args.runs} runs")
    print(f"limit: ~{REFERENCE_GFLOP_PER_CLOUD:g} GFLOP per cloud ({counted:.2f} GFLOP of matmuls counted) at "
          f"{REFERENCE_GFLOPS:g} GFLOP/s (large fp32 matmul, reference 2-core machine) = {reference_limit:.0f} "
          f"clouds/s -> ratio {rate / reference_limit:.2f}")
    print(f"this machine during the runs: 2048x2048 fp32 matmul median {gflops_now:.0f} GFLOP/s -> limit "
          f"{gflops_now / REFERENCE_GFLOP_PER_CLOUD:.0f} clouds/s -> ratio {local_ratio:.2f} (median over runs)")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu_ms = 1e3 * statistics.median(cpu)
    print(f"CPU time: median {cpu_ms:.0f} ms per cloud (all threads); {cores} cores kept busy without waiting "
          f"would give {cores * 1e3 / cpu_ms:.1f} clouds/s (a bound for an idle machine, not a measurement)")
    return {"clouds_per_s": rate, "runs": rates, "ratio": rate / reference_limit, "matmul_gflops": gflops_now,
            "local_ratio": local_ratio, "cpu_ms_per_cloud": cpu_ms}


if __name__ == "__main__":
    main()
