"""Example inputs for the tools, exported from a data root (the synthetic one works: data/make_synthetic.py).

    python -m tools.export_examples --data-root data/synthetic --out examples

Writes
  <out>/objects/   ModelNet40 test clouds in the point formats (binary and ascii .ply, .npy, .npz, .xyz, .csv),
                   named <class>_<n>.<suffix>, and four meshes made with trimesh (.obj, .off, .stl, .glb)
  <out>/part.ply   a ShapeNetPart test shape (a chair when there is one; its category is printed)
  <out>/room.ply   an S3DIS room with colours, put back together from its blocks: a block stores x, y, z
                   divided by the room's extent, and its x, y in metres relative to the block, so the extent
                   is their ratio
"""

from __future__ import annotations

import sys

if not __package__:  # run as a file: the repository root is not importable, say how to run it
    print("error: run this script from the repository root as a module: python -m tools.export_examples --help",
          file=sys.stderr)
    raise SystemExit(2)

import argparse
from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement

from datasets import S3DIS, ModelNet40, ShapeNetPart
from datasets.shapenet_part import CATEGORY_NAMES
from utils.errors import DataError, exit_on_user_error
from utils.files import atomic_write, atomic_write_text, make_folder

FORMATS = ("ply", "ascii.ply", "npy", "npz", "xyz", "csv")


def write_cloud(path: Path, xyz: np.ndarray, rgb: np.ndarray | None = None) -> None:
    name = path.name
    if name.endswith(".ply"):
        fields = [(a, "<f4") for a in "xyz"] + ([(c, "u1") for c in ("red", "green", "blue")] if rgb is not None else [])
        vertex = np.empty(len(xyz), dtype=fields)
        for axis, a in enumerate("xyz"):
            vertex[a] = xyz[:, axis]
        if rgb is not None:
            for axis, c in enumerate(("red", "green", "blue")):
                vertex[c] = np.round(rgb[:, axis] * 255).astype(np.uint8)
        atomic_write(path, PlyData([PlyElement.describe(vertex, "vertex")], text=name.endswith(".ascii.ply")).write)
    elif name.endswith(".npy"):
        atomic_write(path, lambda file: np.save(file, xyz))
    elif name.endswith(".npz"):
        atomic_write(path, lambda file: np.savez(file, points=xyz))
    else:
        header = "x,y,z\n" if name.endswith(".csv") else ""
        separator = "," if name.endswith(".csv") else " "
        atomic_write_text(path, header + "\n".join(separator.join(f"{v:.9g}" for v in row) for row in xyz.tolist())
                          + "\n")


def export_objects(root: Path, out: Path, per_class: int, classes: int) -> int:
    import trimesh

    dataset = ModelNet40(root, split="test", num_points=2048)
    folder = make_folder(out / "objects")
    written = 0
    for label in sorted(set(dataset.labels.tolist()))[:classes]:
        for n, index in enumerate(np.flatnonzero(dataset.labels == label)[:per_class]):
            suffix = FORMATS[written % len(FORMATS)]
            write_cloud(folder / f"{dataset.class_names[label]}_{n}.{suffix}", dataset.points[index])
            written += 1
    meshes = {"box.obj": trimesh.creation.box(extents=(1.0, 0.6, 0.4)),
              "cylinder.off": trimesh.creation.cylinder(radius=0.3, height=1.0),
              "sphere.stl": trimesh.creation.icosphere(subdivisions=2),
              "cone.glb": trimesh.creation.cone(radius=0.5, height=1.0)}
    for name, mesh in meshes.items():
        atomic_write(folder / name, lambda file: mesh.export(file, file_type=name.rsplit(".", 1)[1]))
    return written + len(meshes)


def export_part(root: Path, out: Path) -> str:
    dataset = ShapeNetPart(root, split="test", num_points=2048)
    chairs = np.flatnonzero(dataset.categories == CATEGORY_NAMES.index("chair"))
    index = int(chairs[0]) if len(chairs) else 0
    write_cloud(out / "part.ply", dataset.points[index])
    return CATEGORY_NAMES[int(dataset.categories[index])]


def export_room(root: Path, out: Path) -> tuple[str, int]:
    dataset = S3DIS(root, split="test", test_area=5)
    room = dataset.rooms[0]
    blocks = dataset.points[[i for i, name in enumerate(dataset.rooms) if name == room]]
    spans = []
    for block in blocks:  # metres per unit of room-normalised coordinate, from each block's x and y
        spread = block.max(axis=0) - block.min(axis=0)
        spans.append(spread[0:2] / np.maximum(spread[6:8], 1e-9))
    height = blocks[..., 8] > 1e-3
    extent = np.array([*np.median(spans, axis=0), np.median(blocks[..., 2][height] / blocks[..., 8][height])])
    if not np.isfinite(extent).all() or (extent <= 0).any():
        raise DataError(f"{dataset.files[0]}: cannot recover the size of room {room} from its blocks")
    points = np.unique(blocks.reshape(-1, 9), axis=0)
    write_cloud(out / "room.ply", (points[:, 6:9] * extent).astype(np.float32), points[:, 3:6])
    return room, len(points)


@exit_on_user_error
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.export_examples", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default="data/synthetic")
    parser.add_argument("--out", default="examples")
    parser.add_argument("--per-class", type=int, default=2, help="ModelNet40 test clouds per class (default 2)")
    parser.add_argument("--classes", type=int, default=6, help="classes exported (default 6)")
    args = parser.parse_args(argv)
    root, out = Path(args.data_root), Path(args.out)
    make_folder(out)
    objects = export_objects(root, out, args.per_class, args.classes)
    category = export_part(root, out)
    room, points = export_room(root, out)
    print(f"wrote {objects} files to {out / 'objects'}, {out / 'part.ply'} (a {category}), "
          f"{out / 'room.ply'} ({room}, {points} points with colours)")


if __name__ == "__main__":
    main()
