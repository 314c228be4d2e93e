"""ShapeNetRender loader throughput: samples/s per core through a DataLoader, grayscale off and on.

    python -m bench.loader                       # generates `small` synthetic data in a temp dir (~30 s)
    python -m bench.loader --data-root data --workers 4 --batches 100
    python -m bench.loader --profile 200         # also cProfile 200 in-process items (top functions)

Each sample is the full pretraining item: PLY read, resample, two point augmentations, PNG decode and the
image pipeline (composite, colour jitter, flip, [grayscale], resize, normalise), then default collation into
batches of --batch-size. The first --warmup batches (worker start-up) are not timed.

"Per core" is reported two ways:
  wall     = samples/s (wall clock) / number of worker processes. This assumes each worker has a core to
             itself; on a busy or small machine (the main process also needs some CPU) it under-reports.
  cpu-time = samples / CPU seconds spent by the worker processes over the timed window (from /proc), i.e.
             samples per second of one fully used core, independent of what else runs on the machine.
With --workers 0 items are made in the main process with torch limited to one thread, and both figures
refer to that process.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler

from datasets.shapenet_render import ShapeNetRender
from utils.errors import exit_on_user_error

TARGET_PER_CORE = 250.0


def _clock_ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        return 100


def children_cpu_seconds(parent: int) -> float | None:
    """user+system CPU seconds of the live child processes of ``parent`` (Linux /proc), or None."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    total = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # the command name may contain spaces
        if int(fields[1]) == parent:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _clock_ticks()


def measure(dataset: ShapeNetRender, workers: int, batch_size: int, batches: int, warmup: int) -> dict:
    sampler = RandomSampler(dataset, replacement=True, num_samples=(batches + warmup) * batch_size,
                            generator=torch.Generator().manual_seed(0))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        drop_last=True, persistent_workers=False)
    threads = torch.get_num_threads()
    if workers == 0:
        torch.set_num_threads(1)
    try:
        seen = 0
        last = warmup + batches - 1
        start = cpu_start = cpu_end = elapsed = None
        for step, batch in enumerate(loader):
            if step == warmup:
                start = time.perf_counter()
                cpu_start = children_cpu_seconds(os.getpid()) if workers else time.process_time()
            if step > warmup:  # a batch received after the timer started was made inside the window
                seen += batch["points1"].shape[0]
            if step == last:  # read the workers' CPU time now: they are shut down when the loop ends
                elapsed = time.perf_counter() - start
                cpu_end = children_cpu_seconds(os.getpid()) if workers else time.process_time()
    finally:
        torch.set_num_threads(threads)
    rate = seen / elapsed
    cpu = None if cpu_start is None or cpu_end is None else cpu_end - cpu_start
    return {
        "samples": seen,
        "seconds": elapsed,
        "samples_per_s": rate,
        "per_core_wall": rate / max(workers, 1),
        "per_core_cpu": seen / cpu if cpu else None,
        "shapes": {k: tuple(v.shape) for k, v in batch.items()},
    }


def profile_items(dataset: ShapeNetRender, count: int) -> None:
    torch.set_num_threads(1)
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(count):
        dataset[i % len(dataset)]
    profiler.disable()
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(15)


@exit_on_user_error
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="folder holding ShapeNet/ and ShapeNetRendering/ "
                                            "(default: generate `small` synthetic data in a temp dir)")
    parser.add_argument("--size", choices=("tiny", "small"), default="small",
                        help="synthetic data size generated when no --data-root is given")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--num-points", type=int, default=2048)
    parser.add_argument("--batches", type=int, default=30, help="timed batches per configuration (>= 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches first (worker start-up)")
    parser.add_argument("--grayscale", choices=("off", "on", "both"), default="both")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also cProfile N items made in-process (grayscale on)")
    args = parser.parse_args(argv)
    if args.batches < 2 or args.warmup < 1:
        parser.error("need --batches >= 2 and --warmup >= 1")

    with tempfile.TemporaryDirectory(prefix="adacrossnet-bench-") as tmp:
        root = args.data_root
        if root is None:
            from data.make_synthetic import make_synthetic

            root = Path(tmp) / "synthetic"
            started = time.perf_counter()
            make_synthetic(root, seed=0, size=args.size)
            print(f"generated {args.size} synthetic data in {time.perf_counter() - started:.1f} s: {root}")
        settings = {"off": [False], "on": [True], "both": [False, True]}[args.grayscale]
        print(f"ShapeNetRender loader: workers={args.workers} batch={args.batch_size} "
              f"image_size={args.image_size} num_points={args.num_points} (two point views), "
              f"{args.batches} timed batches after {args.warmup} warm-up, {os.cpu_count()} CPUs visible")
        for grayscale in settings:
            dataset = ShapeNetRender(root, num_points=args.num_points, image_size=args.image_size,
                                     grayscale=grayscale, seed=0)
            result = measure(dataset, args.workers, args.batch_size, args.batches, args.warmup)
            cpu, wall = result["per_core_cpu"], result["per_core_wall"]
            cpu_text = f"{cpu:.1f}" if cpu else "n/a"
            verdict = ", ".join(f"{name} {'meets' if value >= TARGET_PER_CORE else 'BELOW'}"
                                for name, value in (("wall", wall), ("cpu-time", cpu)) if value)
            print(f"grayscale={'on ' if grayscale else 'off'} {len(dataset)} objects: "
                  f"{result['samples_per_s']:.1f} samples/s total; per core: wall {wall:.1f}, "
                  f"cpu-time {cpu_text} samples/s; target >= {TARGET_PER_CORE:.0f} per core: {verdict}")
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"load average {load:.2f} on {os.cpu_count()} CPUs (wall per core is only meaningful when the "
              f"machine has a free core per worker; cpu-time per core is much less affected by other jobs)")
        print("batch shapes:", result["shapes"])
        if args.profile:
            profile_items(ShapeNetRender(root, num_points=args.num_points, image_size=args.image_size,
                                         grayscale=True, seed=0), args.profile)


if __name__ == "__main__":
    main()
