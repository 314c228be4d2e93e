"""One full pretraining step at the published scale: ours against the textbook baseline, part by part.

    python -m bench.pretrain_step                   # the published setup on CUDA (below)
    python -m bench.pretrain_step --device cpu --batch 8 --points 512 --k 16 --image-size 64 --image-arch resnet18
    python -m bench.pretrain_step --loader 8 --data-root data/synthetic     # + the epoch projection
    python -m bench.pretrain_step --sync-debug --no-baseline                # CUDA: any host sync is an error

The step (AdaCrossNet's published setup): both augmented point views as one batch of 2B through DGCNN (k=20,
emb_dims 1024) and the point head 2048 -> 1024 -> 256; the RGB and the grayscale view through two ResNet-50s
at 224 px and their heads 2048 -> 512 -> 256; the intra-modal NT-Xent and the stacked cross-modal NT-Xent
(T=0.2); the published `adacrossnet` weighter; Adam (lr 1e-3, weight decay 1e-6). B=32 objects, N=2048.
`--no-gray` drops the grayscale branch (the cross-modal loss is then CrossPoint's mean form).

Variants, each in a fresh subprocess (no shared allocator state, cuDNN choices or warm caches):
  ours      the memory-lean EdgeConv (models.dgcnn.DGCNN); on CUDA also bf16 autocast, channels_last ResNets,
            cudnn.benchmark (utils.fast_cuda), and the batch copied from pinned memory without blocking;
  baseline  the textbook EdgeConv (bench/textbook_dgcnn.py), fp32, NCHW ResNets, torch's default cuDNN
            settings, a blocking copy from pageable memory.
Both have the same parameters and compute the same function (ours up to bf16 rounding under autocast).

Timing: the median over --steps steps after --warmup warm-up steps (the warm-up allocates Adam's state and
lets cuDNN / oneDNN pick kernels). Every part is bracketed by torch.cuda.Event records on CUDA (GPU time
between consecutive events; nothing inside the step waits for the GPU) or by time.perf_counter on the CPU
(where ops run synchronously). To time the backward per part the step backpropagates in three passes: the
loss back to the embeddings (which enter the objective as detached leaves), then the point branch from its
embeddings' gradient, then the image branches from theirs. The parameters get the same gradients as from
one backward over the whole graph; the autograd engine is only entered three times instead of once.

Peak memory: what the training steps (warm-up included, so Adam's state counts) add at their peak over what
was allocated before them (parameters and the input batch). CUDA: torch.cuda.max_memory_allocated. CPU: the
increase of the process's peak resident set (ru_maxrss), an upper bound, as the allocator keeps freed memory.
On the CPU the process CPU time per step is printed too: with --threads 1 it is nearly independent of other
jobs on the machine, while wall time on a loaded machine is not.

`--loader W --data-root DIR` also times the ShapeNetRender DataLoader (W workers, the same batch, image size,
points and grayscale setting; bench.loader's method) and projects one epoch of the 43,783 ShapeNetRender
objects: the step bound (steps x median step time) against the loader bound (objects / loader rate). The
workers prefetch while the step runs, so an epoch takes about the larger of the two.
"""

from __future__ import annotations

import argparse
import contextlib
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
from losses.objective import PretrainObjective
from losses.weighting import WEIGHTERS
from models.adacrossnet import AdaCrossNet
from models.common import image_projection_head, point_projection_head
from models.build import build_model
from models.image_encoder import ARCHS, ImageEncoder
from utils.fast_cuda import enable_fast_cuda

ROOT = Path(__file__).resolve().parents[1]
SHAPENET_RENDER_OBJECTS = 43_783
EMB_DIMS, PROJ_DIM = 1024, 256
PARTS = ("host-to-device copy", "point encoder fwd", "image encoders fwd", "losses + weighter fwd/bwd",
         "point encoder bwd", "image encoders bwd", "optimizer (Adam)")


def build(args, variant: str, device: torch.device):
    torch.manual_seed(0)
    ours = variant == "ours"
    channels_last = ours and args.channels_last
    encoder = (build_model({"name": "dgcnn", "k": args.k, "emb_dims": EMB_DIMS}) if ours  # the baseline is bench-only
               else TextbookDGCNN(k=args.k, emb_dims=EMB_DIMS))
    rgb = ImageEncoder(args.image_arch, channels_last=channels_last)
    gray = ImageEncoder(args.image_arch, in_channels=1, channels_last=channels_last) if args.gray else None
    model = AdaCrossNet(encoder, point_projection_head(encoder.out_dim, EMB_DIMS, PROJ_DIM),
                        rgb, image_projection_head(rgb.out_dim, 512, PROJ_DIM),
                        gray, image_projection_head(gray.out_dim, 512, PROJ_DIM) if gray is not None else None)
    objective = PretrainObjective(temperature=0.2, cross_modal="stacked" if args.gray else "mean",
                                  weighter=WEIGHTERS[args.weighting](PretrainObjective.names))
    model.to(device).train(), objective.to(device).train()
    optimizer = torch.optim.Adam([*model.parameters(), *objective.parameters()], lr=1e-3, weight_decay=1e-6)
    return model, objective, optimizer


def host_batch(args, pinned: bool) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    size = args.image_size
    batch = [torch.rand(args.batch, args.points, 3, generator=g) * 2 - 1,
             torch.rand(args.batch, args.points, 3, generator=g) * 2 - 1,
             torch.randn(args.batch, 3, size, size, generator=g)]
    if args.gray:
        batch.append(torch.randn(args.batch, 1, size, size, generator=g))
    return [t.pin_memory() for t in batch] if pinned else batch


class Clock:
    """Marks between the parts of a step: CUDA events on the GPU's timeline, perf_counter on the CPU."""

    def __init__(self, device: torch.device, parts: int):
        self.cuda = device.type == "cuda"
        self.events = [torch.cuda.Event(enable_timing=True) for _ in range(parts + 1)] if self.cuda else []
        self.times: list[float] = []

    def mark(self) -> None:
        if self.cuda:
            self.events[len(self.times)].record()
            self.times.append(0.0)
        else:
            self.times.append(time.perf_counter())

    def seconds(self) -> list[float]:
        """Per-part seconds of the step just marked (call after the GPU has finished it)."""
        if self.cuda:
            return [a.elapsed_time(b) / 1000 for a, b in zip(self.events, self.events[1:])]
        return [b - a for a, b in zip(self.times, self.times[1:])]


def step(args, model, objective, optimizer, host, device, amp, non_blocking: bool, clock: Clock) -> None:
    autocast = torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None)
    batch = args.batch
    clock.mark()
    points1, points2, image, *gray = [t.to(device, non_blocking=non_blocking) for t in host]
    clock.mark()
    with autocast:
        z_points = model.point_head(model.point_encoder(torch.cat((points1, points2))))
    clock.mark()
    with autocast:
        images = [model.image_head(model.image_encoder(image))]
        if gray:
            images.append(model.gray_head(model.gray_encoder(gray[0])))
    clock.mark()
    leaf_points = z_points.detach().requires_grad_()
    leaf_images = [z.detach().requires_grad_() for z in images]
    embeddings = {"z_points1": leaf_points[:batch], "z_points2": leaf_points[batch:], "z_image": leaf_images[0]}
    if gray:
        embeddings["z_gray"] = leaf_images[1]
    with autocast:
        loss = objective(embeddings)["loss"]
    loss.backward()
    clock.mark()
    z_points.backward(leaf_points.grad)
    clock.mark()
    torch.autograd.backward(images, [leaf.grad for leaf in leaf_images])
    clock.mark()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    clock.mark()


def worker(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    ours = args.worker == "ours"
    amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp] if ours else None
    settings = enable_fast_cuda(device) if ours else {}
    model, objective, optimizer = build(args, args.worker, device)
    host = host_batch(args, pinned=ours and cuda)
    base = memory.start(device)
    rows, cpu_times = [], []
    for i in range(args.warmup + args.steps):
        cpu_start = time.process_time()
        clock = Clock(device, len(PARTS))
        timed = i >= args.warmup
        # sync-debug: every CUDA call that waits for the device raises, inside the timed steps
        debug = timed and cuda and args.sync_debug
        if debug:
            torch.cuda.set_sync_debug_mode("error")
        try:
            step(args, model, objective, optimizer, host, device, amp, ours and cuda, clock)
        finally:
            if debug:
                torch.cuda.set_sync_debug_mode("default")
        if cuda:
            torch.cuda.synchronize()
        if timed:
            rows.append(clock.seconds())
            cpu_times.append(time.process_time() - cpu_start)
    peak = memory.added(device, base)
    totals = [sum(row) for row in rows]
    return {
        "variant": args.worker,
        "parts_s": [statistics.median(column) for column in zip(*rows)],
        "step_s": statistics.median(totals),
        "steps_s": totals,
        "cpu_s": statistics.median(cpu_times),
        "peak_bytes": peak,
        "params": sum(p.numel() for p in model.parameters()),
        "amp": args.amp if ours else "none",
        "channels_last": ours and args.channels_last,
        "settings": settings,
        "threads": torch.get_num_threads(),
        "sync_debug": ours and cuda and args.sync_debug,
    }


def run_worker(argv: list[str], variant: str) -> dict:
    command = [sys.executable, "-m", "bench.pretrain_step", *argv, "--worker", variant]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"{variant} worker failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def loader_rate(args) -> dict:
    from bench.loader import measure
    from datasets.shapenet_render import ShapeNetRender

    dataset = ShapeNetRender(args.data_root, num_points=args.points, image_size=args.image_size,
                             grayscale=args.gray, seed=0)
    return measure(dataset, args.loader, args.batch, args.loader_batches, warmup=2)


def print_report(args, rows: dict) -> dict:
    ours, baseline = rows["ours"], rows.get("baseline")
    cuda = args.device.startswith("cuda")
    gray = "rgb + gray" if args.gray else "rgb only"
    print(f"pretraining step: B={args.batch} N={args.points} k={args.k} images {args.image_size} px, "
          f"{args.image_arch} x{2 if args.gray else 1} ({gray}), weighter {args.weighting}, device {args.device}, "
          f"torch {torch.__version__}, threads {ours['threads']}")
    print(f"  median of {args.steps} steps after {args.warmup} warm-up; parts timed with "
          f"{'CUDA events' if cuda else 'perf_counter (CPU ops are synchronous)'}, backward in three passes")
    print(f"  ours:     memory-lean EdgeConv, amp {ours['amp']}, channels_last {'on' if ours['channels_last'] else 'off'}"
          + (f", {', '.join(ours['settings'])}, pinned non-blocking copy" if cuda else "")
          + (", under sync-debug 'error'" if ours["sync_debug"] else ""))
    if baseline:
        print("  baseline: textbook EdgeConv, fp32, NCHW" + (", default cuDNN settings, pageable copy" if cuda else ""))
    header = f"  {'part':28s} {'ours ms':>10s}" + (f" {'baseline ms':>12s} {'ratio':>7s}" if baseline else "")
    print(header)
    for i, part in enumerate(PARTS + ("step total",)):
        mine = ours["parts_s"][i] if i < len(PARTS) else ours["step_s"]
        line = f"  {part:28s} {1000 * mine:10.1f}"
        if baseline:
            theirs = baseline["parts_s"][i] if i < len(PARTS) else baseline["step_s"]
            ratio = f"{mine / theirs:6.2f}x" if min(mine, theirs) >= 1e-4 else "    n/a"
            line += f" {1000 * theirs:12.1f} {ratio}"
        print(line)
    memory = "CUDA max_memory_allocated" if cuda else "CPU peak RSS increase"
    for name, row in rows.items():
        print(f"  {name:9s} {args.batch / row['step_s']:8.1f} samples/s, {row['peak_bytes'] / 2**20:9.1f} MiB peak "
              f"({memory}), steps {', '.join(f'{1000 * t:.0f}' for t in row['steps_s'])} ms"
              + ("" if cuda else f", process CPU time {1000 * row['cpu_s']:.0f} ms/step"))
    if not cuda and baseline:
        # with one thread, CPU time per step hardly depends on what else runs on the machine; wall time does
        print(f"  process CPU time ratio ours/baseline: {ours['cpu_s'] / baseline['cpu_s']:.3f}x")
    summary = {"step_s": ours["step_s"], "samples_per_s": args.batch / ours["step_s"], "peak_bytes": ours["peak_bytes"]}
    text = f"ours {1000 * ours['step_s']:.1f} ms/step, {summary['samples_per_s']:.1f} samples/s"
    if baseline:
        summary["time_ratio"] = ours["step_s"] / baseline["step_s"]
        summary["memory_ratio"] = ours["peak_bytes"] / max(baseline["peak_bytes"], 1)
        text += (f"; baseline {1000 * baseline['step_s']:.1f} ms/step; ratio ours/baseline: time "
                 f"{summary['time_ratio']:.3f}x, peak memory {summary['memory_ratio']:.3f}x")
    if args.loader:
        rate = loader_rate(args)["samples_per_s"]
        steps = SHAPENET_RENDER_OBJECTS // args.batch
        step_bound, loader_bound = steps * ours["step_s"], SHAPENET_RENDER_OBJECTS / rate
        bound = "the step (compute)" if step_bound >= loader_bound else f"the loader ({args.loader} workers)"
        print(f"  loader: {rate:.1f} samples/s with {args.loader} workers, batch {args.batch} ({args.data_root})")
        print(f"  epoch of {SHAPENET_RENDER_OBJECTS:,} objects ({steps:,} steps): step bound "
              f"{step_bound / 60:.1f} min, loader bound {loader_bound / 60:.1f} min -> {bound} bounds it: "
              f"about {max(step_bound, loader_bound) / 60:.1f} min per epoch"
              + ("" if cuda else " (on a CPU the step and the workers share the cores: optimistic)"))
        summary.update(loader_samples_per_s=rate, epoch_s=max(step_bound, loader_bound))
        text += f"; epoch {max(step_bound, loader_bound) / 60:.1f} min, bound by {bound}"
    print(f"summary: {text}")
    return summary


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda or cuda:N")
    parser.add_argument("--amp", default="auto", choices=["auto", "none", "bf16", "fp16"],
                        help="autocast of ours (auto: bf16 on CUDA, none on the CPU); the baseline is fp32")
    parser.add_argument("--batch", type=int, default=32, help="objects per step (2x point clouds)")
    parser.add_argument("--points", type=int, default=2048)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--image-arch", default="resnet50", choices=sorted(ARCHS))
    parser.add_argument("--no-gray", dest="gray", action="store_false", help="no grayscale branch")
    parser.add_argument("--weighting", default="adacrossnet", choices=sorted(WEIGHTERS))
    parser.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                        help="channels_last ResNets for ours (auto: on CUDA only)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false", help="time ours only")
    parser.add_argument("--sync-debug", action="store_true",
                        help="CUDA: run ours' timed steps under torch.cuda.set_sync_debug_mode('error')")
    parser.add_argument("--loader", type=int, default=0, metavar="W",
                        help="also time the ShapeNetRender loader with W workers and project an epoch")
    parser.add_argument("--data-root", help="ShapeNetRender root for --loader (python data/make_synthetic.py)")
    parser.add_argument("--loader-batches", type=int, default=20, help="timed loader batches")
    parser.add_argument("--worker", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = args.device.startswith("cuda")
    if args.amp == "auto":
        args.amp = "bf16" if cuda else "none"
    args.channels_last = args.channels_last == "on" or (args.channels_last == "auto" and cuda)
    if args.worker:
        print(json.dumps(worker(args)))
        return {}
    if cuda and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine")
    if args.sync_debug and not cuda:
        parser.error("--sync-debug needs a CUDA device")
    if args.loader and not args.data_root:
        parser.error("--loader needs --data-root (python data/make_synthetic.py --out DIR --size small)")
    if args.steps < 1 or args.warmup < 1 or args.batch < 2:
        parser.error("need --steps >= 1, --warmup >= 1 and --batch >= 2 (BatchNorm)")
    worker_argv = [a for a in argv if a not in ("--no-baseline",)]
    worker_argv += ["--device", args.device, "--amp", args.amp,
                    "--channels-last", "on" if args.channels_last else "off"]
    if not cuda and args.points * args.batch > 8 * 512:
        print("note: the published size takes minutes per step on a CPU; see the reduced command in --help",
              file=sys.stderr)
    with contextlib.suppress(AttributeError, OSError):
        if not cuda and os.getloadavg()[0] > 0.5 and args.threads != 1:
            print(f"note: load average {os.getloadavg()[0]:.1f} before starting: with other jobs on the cores, "
                  "multi-threaded timings stall (see bench.encoder --help, --threads 1)", file=sys.stderr)
    rows = {"ours": run_worker(worker_argv, "ours")}
    if args.baseline:
        rows["baseline"] = run_worker(worker_argv, "baseline")
    return {"rows": rows, "summary": print_report(args, rows)}


if __name__ == "__main__":
    main()
