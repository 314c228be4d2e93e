"""Features of your own point clouds (or of a benchmark split) from a trained encoder, into one .npz.

    python -m tools.embed --checkpoint runs/pretrain/best.pt scans/ more/*.ply mesh.obj --out features.npz
    python -m tools.embed --checkpoint runs/pretrain/best.pt --dataset modelnet40:trainval --out reference.npz
    python -m tools.embed --checkpoint dgcnn_cls_best.pth --k 15 scans/ --out features.npz   # CrossPoint's

INPUTS are files, folders (searched recursively) and globs, mixed as you like; tools/clouds.py lists the
formats. Each cloud is turned into the encoder's input deterministically (tools.clouds.Preprocessing: the
ModelNet40 protocol, a seeded subset of the points in a canonical order, unit sphere), so the same file
always gives the same features, whatever the order of its points (bit for bit in the same batch; other
batch mates change only the matmuls' rounding, well below 1e-5). A file that cannot be used gets one line
on stderr and is skipped (counted at the end); with --strict it stops the run (exit status 2).

The .npz (np.load(..., allow_pickle=False) reads it) holds `features` (n, D) float32 (D = 2048 for DGCNN),
`paths` (n,), `checkpoint` (its file name), `checkpoint_sha256`, `model` (JSON: what load_model built) and
`preprocessing` (JSON: the settings above); with --dataset also `labels` (n,) and `class_names`. Benchmark
clouds go through the same preprocessing as files, so a split embedded here is a reference set for files
embedded here (tools.classify); its paths read `modelnet40:trainval:17`.

Speed: clouds are read and preprocessed in a thread pool while the encoder runs. By default the encoder
runs in --workers threads with one torch thread each (on a CPU, one per core): each batch is a single-thread
job, so no core waits at the OpenMP barriers of another's small ops. python -m bench.embed measures the speed.
"""

from __future__ import annotations

import sys

if not __package__:  # run as a file: the repository root is not importable, say how to run it
    print("error: run this script from the repository root as a module: python -m tools.embed --help",
          file=sys.stderr)
    raise SystemExit(2)

import argparse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from datasets.clouds import Preprocessing
from engine.parallel import ParallelForward, chunks, keep_freed_memory, ordered_map
from tools.clouds import expand_inputs, load_benchmark
from tools.common import check_device, check_positive, file_sha256, load_model, save_features
from utils.errors import ConfigError, DataError, exit_on_user_error


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.embed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="*", help="files, folders and globs")
    parser.add_argument("--checkpoint", required=True, help="train.py's best.pt, a downstream run's checkpoint, "
                                                            "or a CrossPoint / AdaCrossNet release")
    parser.add_argument("--out", required=True, help="the .npz to write")
    parser.add_argument("--dataset", help="embed a benchmark split instead: modelnet40:SPLIT, "
                                          "scanobjectnn[:VARIANT]:SPLIT or folder:PATH:SPLIT (a class-folder tree "
                                          "<PATH>/<class>/{train,test}/; SPLIT: train, val, trainval, test)")
    parser.add_argument("--data-root", default="data", help="for --dataset (default: data)")
    parser.add_argument("--k", type=int, help="override k of the kNN graphs (checkpoints without a config: "
                                              "DGCNN 20; CrossPoint's script trained with 15)")
    parser.add_argument("--emb-dims", type=int, help="override the embedding width")
    defaults = Preprocessing()
    parser.add_argument("--points", type=int, default=defaults.num_points,
                        help=f"points per cloud fed to the encoder (default {defaults.num_points}, as ModelNet40)")
    parser.add_argument("--mesh-points", type=int, default=defaults.mesh_points,
                        help=f"surface samples per mesh before the subset (default {defaults.mesh_points})")
    parser.add_argument("--min-points", type=int, default=defaults.min_points,
                        help=f"refuse clouds with fewer distinct points (default {defaults.min_points})")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the subset and mesh sampling")
    parser.add_argument("--batch-size", type=int, default=4,
                        help="clouds per forward pass (default 4: every tensor of a 1,024-point batch stays "
                             "under 32 MiB, which the C allocator reuses instead of mapping afresh)")
    parser.add_argument("--workers", type=int, default=None,
                        help="encoder threads (default: one per core the process may use, at most 8)")
    parser.add_argument("--readers", type=int, default=2, help="file-reading threads (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    parser.add_argument("--strict", action="store_true", help="stop at the first unusable file (exit status 2)")
    args = parser.parse_args(argv)
    if bool(args.inputs) == bool(args.dataset):
        raise ConfigError("give INPUTS (files, folders, globs) or --dataset, not both and not neither")
    check_positive(args, ("points", "mesh_points", "min_points", "batch_size", "readers", "workers", "k", "emb_dims"))
    check_device("--device", args.device)
    return args


def embed_items(encoder: ParallelForward, items: Sequence, prepare: Callable[[object], np.ndarray], *, batch_size: int,
                readers: int, strict: bool, progress: bool = True) -> tuple[np.ndarray, list[int], list[str]]:
    """Features of every item that `prepare` accepts -> (features (n, D) float32, indices of those items,
    one problem line per item refused). `prepare` raises DataError for an unusable item."""
    problems: list[str] = []

    def attempt(index: int):
        try:
            return index, prepare(items[index])
        except DataError as error:
            if strict:
                raise
            return index, str(error)

    kept: list[int] = []
    features: list[np.ndarray] = []
    bar = tqdm(total=len(items), unit="cloud", desc="embedding", disable=not progress or None,
               mininterval=1.0 if sys.stderr.isatty() else 30.0)

    def good_batches(prepared):
        for batch in chunks(prepared, batch_size):
            clouds = []
            for index, result in batch:
                if isinstance(result, str):
                    problems.append(result)
                    tqdm.write(f"skipped: {result}", file=sys.stderr)
                else:
                    clouds.append(result)
                    kept.append(index)
            bar.update(len(batch))
            if clouds:
                yield np.stack(clouds)

    with ThreadPoolExecutor(readers, thread_name_prefix="reader") as pool:
        prepared = ordered_map(pool, attempt, range(len(items)), ahead=4 * batch_size * max(encoder.workers, 1))
        for out in encoder.run(good_batches(prepared)):
            features.append(out)
    bar.close()
    if not features:
        return np.zeros((0, 0), np.float32), kept, problems
    return np.concatenate(features).astype(np.float32, copy=False), kept, problems


def run(args: argparse.Namespace) -> dict:
    settings = Preprocessing(num_points=args.points, seed=args.seed, mesh_points=args.mesh_points,
                             min_points=args.min_points)
    model, info = load_model(args.checkpoint, "embed", k=args.k, emb_dims=args.emb_dims)
    if info.k is not None and settings.num_points < info.k:
        raise ConfigError(f"--points {settings.num_points}: the encoder's k={info.k} needs at least {info.k}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {args.device}: CUDA is not available on this machine")
    keep_freed_memory()
    extra = {}
    if args.dataset:
        split = load_benchmark(args.dataset, args.data_root, settings)
        items = list(range(len(split.points)))
        names = [split.path(i) for i in items]

        def prepare(index):  # a class-folder split is prepared as files are; h5 clouds are prepared here
            return split.points[index] if split.prepared else settings.prepare(split.points[index], names[index])
    else:
        items = expand_inputs(args.inputs)
        names = [str(path) for path in items]
        prepare = settings.read
    with ParallelForward(model, args.device, args.workers) as encoder:
        features, kept, problems = embed_items(encoder, items, prepare, batch_size=args.batch_size,
                                               readers=args.readers, strict=args.strict)
    if not kept:
        raise DataError(f"nothing embedded: all {len(items)} input{'s' if len(items) != 1 else ''} refused"
                        if items else "nothing embedded: no input file found")
    if args.dataset:
        extra = {"labels": split.labels[kept], "class_names": np.array(split.class_names)}
    checkpoint = Path(args.checkpoint)
    save_features(args.out, {"features": features, "paths": np.array([names[i] for i in kept]),
                             "checkpoint": checkpoint.name, "checkpoint_sha256": file_sha256(checkpoint),
                             "model": info.to_json(), "preprocessing": settings.to_json(), **extra})
    print(f"embedded {len(kept)} of {len(items)} clouds ({features.shape[1]}-d {info.architecture} features), "
          f"skipped {len(problems)}; wrote {args.out}")
    return {"embedded": len(kept), "skipped": len(problems), "problems": problems, "out": args.out}


@exit_on_user_error
def main(argv=None) -> dict:
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
