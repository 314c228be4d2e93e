"""Segment your own cloud with a fine-tuned part- or semantic-segmentation checkpoint: a labelled PLY.

    python -m tools.segment --checkpoint runs/partseg/best.pt chair.ply --category chair --out chair_seg.ply
    python -m tools.segment --checkpoint runs/semseg/best.pt room.ply --out room_seg.ply --png room_seg.png

Which model the checkpoint holds (DGCNN_partseg or DGCNN_semseg) comes from the checkpoint itself
(tools.common.load_model). The output PLY has every input point, at its input coordinates, with a `label`
vertex property and red/green/blue (uchar) colours of that label; --png draws it. Every point gets a
prediction: the points are cut into chunks of the model's point count (a seeded shuffle, the last chunk
filled up with repeats), each chunk is predicted, and a point's class probabilities are averaged over the
chunks it is in. Input formats as tools.embed (tools/clouds.py); a mesh is first sampled with --mesh-points.

Part segmentation (ShapeNetPart, y up): the cloud is centred and scaled into the unit sphere like
ShapeNetPart's shapes; --category (a name or 0..15) is required, and predictions are restricted to that
category's parts (as the benchmark protocol). `label` is the global part id (ShapeNetPart's 0..49).

Semantic segmentation (S3DIS, z up, metres): the room is shifted to start at 0 and cut into
--block x --block metre columns (1 m, as S3DIS's blocks), each cut into chunks of the model's point count,
with S3DIS's 9 channels per point: x, y relative to the chunk's centre (its minimum + half a block), z
(height above the room's lowest point), r, g, b in [0, 1], and x, y, z divided by the room's extent. A cloud
without colours gets mid grey (0.5, 0.5, 0.5) for every point. `label` is the S3DIS class 0..12. --up y
turns a y-up cloud (or, for part segmentation, --up z a z-up one) into the model's convention first.
"""

from __future__ import annotations

import sys

if not __package__:  # run as a file: the repository root is not importable, say how to run it
    print("error: run this script from the repository root as a module: python -m tools.segment --help",
          file=sys.stderr)
    raise SystemExit(2)

import argparse
import math
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from plyfile import PlyData, PlyElement

from datasets.s3dis import CLASS_NAMES as S3DIS_CLASSES
from datasets.shapenet_part import CATEGORY_NAMES, PART_RANGES
from datasets.transforms import NormalizeUnitSphere
from tasks.segmentation_metrics import restrict_to_category
from datasets.clouds import count_distinct, read_cloud, sort_points
from engine.parallel import chunks
from tools.common import PART_SEGMENTERS, check_positive, load_model
from tools.pictures import draw_clouds, label_colours
from utils.errors import CheckpointError, ConfigError, DataError, exit_on_user_error
from utils.files import atomic_write

DEFAULT_COLOUR = 0.5  # r = g = b for clouds without colours: mid grey


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.segment", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="a point cloud or mesh file")
    parser.add_argument("--checkpoint", required=True, help="a fine-tuned part-seg or sem-seg checkpoint "
                                                            "(the best.pt of a downstream.segmentation run)")
    parser.add_argument("--out", required=True, help="the labelled .ply to write")
    parser.add_argument("--category", help="part segmentation: the object's category, a name "
                                           f"({', '.join(CATEGORY_NAMES)}) or its number")
    parser.add_argument("--png", help="also draw the labelled cloud into this PNG")
    parser.add_argument("--points", type=int, help="points per chunk (default: the checkpoint's training value; "
                                                   "2048 part-seg, 4096 sem-seg)")
    parser.add_argument("--block", type=float, default=1.0, help="sem-seg block side in metres (default 1)")
    parser.add_argument("--up", choices=("y", "z"), help="the input's up axis (default: the model's, y for "
                                                         "part-seg, z for sem-seg)")
    parser.add_argument("--mesh-points", type=int, default=4096, help="surface samples of a mesh (default 4096)")
    parser.add_argument("--k", type=int, help="override k of the kNN graphs")
    parser.add_argument("--emb-dims", type=int, help="override the embedding width")
    parser.add_argument("--batch-size", type=int, default=2, help="chunks per forward pass (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the chunking and mesh sampling")
    args = parser.parse_args(argv)
    if args.block <= 0:
        raise ConfigError(f"--block: must be > 0, got {args.block}")
    check_positive(args, ("batch_size", "mesh_points", "points", "k", "emb_dims"))
    return args


def covering_chunks(indices: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """(chunks, size) rows of `indices` in which every index appears at least once: a seeded shuffle cut into
    ceil(n / size) rows, the last filled up with further draws (without replacement while there are enough)."""
    count = max(1, math.ceil(len(indices) / size))
    fill = count * size - len(indices)
    extra = rng.choice(indices, fill, replace=fill > len(indices))
    return np.concatenate([rng.permutation(indices), extra]).reshape(count, size)


def part_inputs(xyz: np.ndarray, size: int, rng) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(point indices, model input (size, 3)) per chunk of a unit-sphere-normalised object."""
    normalised = NormalizeUnitSphere()(xyz)
    for row in covering_chunks(np.arange(len(xyz)), size, rng):
        yield row, normalised[row]


def room_inputs(xyz: np.ndarray, rgb: np.ndarray, size: int, block: float,
                rng) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(point indices, S3DIS 9-channel input (size, 9)) per chunk of every block column of a z-up room."""
    shifted = (xyz - xyz.min(axis=0)).astype(np.float32)
    extent = shifted.max(axis=0)
    extent[extent == 0] = 1.0
    last = np.maximum(np.ceil(extent[:2] / block).astype(np.int64) - 1, 0)
    cells = np.minimum(np.floor(shifted[:, :2] / block).astype(np.int64), last)  # the far walls join the last cells
    key = cells[:, 0] * (last[1] + 1) + cells[:, 1]
    order = np.argsort(key, kind="stable")
    for column in np.split(order, np.flatnonzero(np.diff(key[order])) + 1):
        for row in covering_chunks(column, size, rng):
            points = shifted[row]
            channels = np.empty((size, 9), dtype=np.float32)
            channels[:, 0:2] = points[:, 0:2] - (points[:, 0:2].min(axis=0) + np.float32(block / 2))
            channels[:, 2] = points[:, 2]
            channels[:, 3:6] = rgb[row]
            channels[:, 6:9] = points / extent
            yield row, channels


def predict(model, inputs, count: int, classes: int, batch_size: int, category: int | None) -> np.ndarray:
    """Class probabilities (count, classes) averaged over the chunks each point is in."""
    total = torch.zeros(count, classes, dtype=torch.float64)
    seen = torch.zeros(count, dtype=torch.float64)
    with torch.inference_mode():
        for batch in chunks(inputs, batch_size):
            rows = torch.from_numpy(np.concatenate([row for row, _ in batch]))
            points = torch.from_numpy(np.stack([x for _, x in batch]))
            if category is None:
                logits = model(points)
            else:
                logits = model(points, torch.full((len(batch),), category, dtype=torch.long))
            total.index_add_(0, rows, torch.softmax(logits.double(), dim=-1).reshape(-1, classes))
            seen.index_add_(0, rows, torch.ones(len(rows), dtype=torch.float64))
    return (total / seen[:, None]).numpy()


def resolve_category(text: str | None, categories: int) -> int:
    if text is None:
        raise ConfigError(f"--category: a part-segmentation model needs the object's category ("
                          f"{', '.join(CATEGORY_NAMES)})")
    names = [name.lower() for name in CATEGORY_NAMES]
    if text.isdigit() and int(text) < categories:
        return int(text)
    if text.lower() in names and categories == len(CATEGORY_NAMES):
        return names.index(text.lower())
    raise ConfigError(f"--category {text}: not one of {', '.join(CATEGORY_NAMES)} (or 0..{categories - 1})")


def write_labelled_ply(path: str | Path, xyz: np.ndarray, labels: np.ndarray, colours: np.ndarray) -> None:
    vertex = np.empty(len(xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                                       ("blue", "u1"), ("label", "<i4")])
    for axis, name in enumerate("xyz"):
        vertex[name] = xyz[:, axis]
    rgb = np.round(colours * 255).astype(np.uint8)
    vertex["red"], vertex["green"], vertex["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    vertex["label"] = labels
    ply = PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<")
    atomic_write(path, ply.write)


def run(args: argparse.Namespace) -> dict:
    model, info = load_model(args.checkpoint, "segment", k=args.k, emb_dims=args.emb_dims)
    part_seg = info.architecture in PART_SEGMENTERS
    if not part_seg and info.in_channels != 9:
        raise CheckpointError(f"{args.checkpoint}: a sem-seg model with {info.in_channels} input channels; this "
                              "tool feeds S3DIS's 9")
    category = resolve_category(args.category, info.num_categories) if part_seg else None
    size = args.points or info.num_points or (2048 if part_seg else 4096)
    if info.k and size < info.k:
        raise ConfigError(f"--points {size}: the model's k={info.k} needs at least {info.k}")
    xyz, rgb = read_cloud(args.input, mesh_points=args.mesh_points, seed=args.seed, colours=not part_seg)
    if count_distinct(sort_points(xyz)) < 2:
        raise DataError(f"{args.input}: fewer than 2 distinct points")
    up = args.up or ("y" if part_seg else "z")
    wanted = "y" if part_seg else "z"
    model_xyz = xyz
    if up != wanted:  # a quarter turn about x: y up -> z up is (x, -z, y), z up -> y up is (x, z, -y)
        model_xyz = np.stack([xyz[:, 0], -xyz[:, 2], xyz[:, 1]] if wanted == "z" else
                             [xyz[:, 0], xyz[:, 2], -xyz[:, 1]], axis=1)
    rng = np.random.default_rng(args.seed)
    if part_seg:
        inputs = part_inputs(model_xyz, size, rng)
        label_names = {p: f"{CATEGORY_NAMES[category]} part {p - PART_RANGES[category].start}"
                       for p in PART_RANGES[category]} if info.num_categories == len(CATEGORY_NAMES) else {}
    else:
        if rgb is None:
            rgb = np.full_like(xyz, DEFAULT_COLOUR)
            print(f"note: {args.input} has no colours; every point gets r = g = b = {DEFAULT_COLOUR}")
        inputs = room_inputs(model_xyz, rgb, size, args.block, rng)
        label_names = dict(enumerate(S3DIS_CLASSES)) if info.outputs == len(S3DIS_CLASSES) else {}
    probabilities = predict(model, inputs, len(xyz), info.outputs, args.batch_size, category)
    if part_seg and info.num_categories == len(CATEGORY_NAMES):
        labels = restrict_to_category(probabilities[None], np.array([category]), PART_RANGES)[0]
    else:
        labels = probabilities.argmax(axis=1)
    shown = sorted(label_names) if label_names else sorted(set(labels.tolist()))
    palette = dict(zip(shown, label_colours(len(shown))))
    colours = np.stack([palette[int(label)] for label in labels]) if len(labels) else np.zeros((0, 3))
    write_labelled_ply(args.out, xyz, labels, colours)
    counts = np.bincount(labels, minlength=info.outputs)
    kind = f"part segmentation ({CATEGORY_NAMES[category] if label_names else category})" if part_seg else \
        "semantic segmentation"
    print(f"{kind} of {len(xyz)} points in chunks of {size}: " + ", ".join(
        f"{label_names.get(label, label)} {counts[label]}" for label in np.flatnonzero(counts)))
    print(f"wrote {args.out}")
    if args.png:
        drawn = model_xyz if wanted == "y" else model_xyz[:, [0, 2, 1]]  # drawn y up
        legend = {str(label_names.get(label, label)): palette[label] for label in shown
                  if counts[label] or label_names}
        draw_clouds(args.png, [drawn], [Path(args.input).name], colours=[colours], legend=legend, size=6.0,
                    point_size=3.0)
        print(f"wrote {args.png}")
    return {"labels": labels, "architecture": info.architecture, "points": size}


@exit_on_user_error
def main(argv=None) -> dict:
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
