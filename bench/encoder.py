"""Training-step time and peak memory: our DGCNN encoder + point head against the textbook DGCNN.

    python -m bench.encoder                          # CPU, fp32, B=16, N=1024, k=20 (from the repo root)
    python -m bench.encoder --device cuda --amp bf16

One step = forward of a (B, N, 3) batch through encoder and projection head (2048 -> 1024 -> 256), a scalar
loss, backward, Adam step. The textbook model (`bench/textbook_dgcnn.py`) computes the same function with the
same parameter shapes; it materialises the (B, 2C, N, k) edge tensors and keeps several (B, C', N, k)
activations for backward.

Every measurement runs in a fresh subprocess, so no variant inherits another's allocator state:
  * time: the median of `--steps` timed steps after one warm-up step (the warm-up allocates the Adam state
    and lets oneDNN/MKL pick kernels), with the default allocator settings;
  * CPU peak memory, in a separate process per variant: `ru_maxrss` after a warm-up and one more step minus
    its value after building the model, optimizer and input, i.e. the extra resident memory a training step
    needs at its peak (activations kept for backward, temporaries, gradients, Adam state). tracemalloc would
    not see torch's allocations. This process sets glibc's `MALLOC_MMAP_THRESHOLD_` to 128 KiB, which also
    switches off glibc's dynamic threshold, so every large tensor is its own mmap, returned to the system
    when freed: resident memory then follows the live tensors instead of whatever the heap retained. (It
    makes every large allocation a fresh page-faulting mmap, which is why the timing runs separately.)
  * CUDA peak memory: `torch.cuda.max_memory_allocated()` over the timed steps minus the memory allocated
    before them (one process per variant does both).
The parent prints both rows and the ratios ours / textbook. The machine should be otherwise idle: the two
variants run one after the other, so a load change between them skews the time ratio. On a machine whose
cores are busy with other jobs, pass `--threads 1`: every OpenMP parallel region waits for its slowest thread,
and our EdgeConv is made of many mid-sized ops (one neighbour slot at a time), so it stalls far more than the
textbook's few huge ones when a thread is descheduled. docs/benchmarks.md has measured figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench import memory
from bench.textbook_dgcnn import TextbookDGCNN
from models.build import build_model
from models.common import point_projection_head

VARIANTS = {"ours": lambda **keys: build_model({"name": "dgcnn", **keys}),
            "textbook": TextbookDGCNN}  # the baseline is bench-only
ROOT = Path(__file__).resolve().parents[1]


def worker(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    encoder = VARIANTS[args.variant](k=args.k, emb_dims=args.emb_dims).to(device)
    head = point_projection_head(2 * args.emb_dims, args.emb_dims, 256).to(device)
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3)
    points = torch.rand(args.batch, args.points, 3, device=device) * 2 - 1
    amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    encoder.train(), head.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=amp, enabled=amp is not None):
            z = head(encoder(points))
        z.float().square().mean().backward()
        optimizer.step()

    cuda = device.type == "cuda"
    base = memory.start(device)
    times = []
    for i in range(args.steps + 1 if args.measure == "time" else 2):
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    peak = memory.added(device, base)
    return {"variant": args.variant, "step_s": statistics.median(times), "times": times, "peak_bytes": peak,
            "params": sum(p.numel() for p in params), "threads": torch.get_num_threads()}


def run_worker(args, variant: str, measure: str) -> dict:
    command = [sys.executable, "-m", "bench.encoder", "--worker", variant, "--measure", measure,
               "--device", args.device, "--amp", args.amp, "--batch", str(args.batch), "--points", str(args.points),
               "--k", str(args.k), "--emb-dims", str(args.emb_dims), "--steps", str(args.steps),
               "--threads", str(args.threads)]
    env = dict(os.environ)
    if measure == "memory":
        env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"{variant} worker failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_variant(args, variant: str) -> dict:
    row = run_worker(args, variant, "time")
    if args.device == "cpu":
        row["peak_bytes"] = run_worker(args, variant, "memory")["peak_bytes"]
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--emb-dims", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default, one per core). On a shared machine use 1: "
                             "an OpenMP region waits for its slowest thread, so when other jobs hold the cores, "
                             "code made of many small ops (ours) stalls far more than a few big ones")
    parser.add_argument("--worker", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=["time", "memory"], default="time", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.variant = args.worker
        print(json.dumps(worker(args)))
        return {}
    if args.device == "cpu" and args.amp != "none":
        parser.error("--amp applies to CUDA only; the CPU benchmark is fp32")

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if args.device == "cpu" and load > 0.5 and args.threads != 1:
        print(f"note: load average {load:.1f} on {os.cpu_count()} cores before starting; if other jobs hold "
              f"the cores, timings with several threads stall (see --threads)", file=sys.stderr)
    rows = {variant: run_variant(args, variant) for variant in ("ours", "textbook")}
    memory = "CUDA max_memory_allocated" if args.device.startswith("cuda") else "CPU peak RSS increase"
    print(f"DGCNN + point head, one training step: B={args.batch} N={args.points} k={args.k} "
          f"emb_dims={args.emb_dims} device={args.device} amp={args.amp} threads={rows['ours']['threads']}")
    for variant, row in rows.items():
        print(f"  {variant:9s} {row['step_s']:8.3f} s/step (median of {len(row['times'])}: "
              f"{', '.join(f'{t:.2f}' for t in row['times'])})  {row['peak_bytes'] / 2**20:8.1f} MiB peak "
              f"({memory})  {row['params']:,} params")
    ratios = {"time": rows["ours"]["step_s"] / rows["textbook"]["step_s"],
              "memory": rows["ours"]["peak_bytes"] / rows["textbook"]["peak_bytes"]}
    print(f"  ratio ours/textbook: time {ratios['time']:.3f}x (target <= 0.35x), "
          f"peak memory {ratios['memory']:.3f}x (target <= 0.35x)")
    return {"rows": rows, "ratios": ratios}


if __name__ == "__main__":
    main()
