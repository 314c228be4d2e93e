"""A class-folder tree of OFF meshes in the layout of Princeton's ModelNet10.zip:
`ModelNet10/<class>/{train,test}/<class>_NNNN.off`.

Each shape is a procedural object (the families of families.py) triangulated from its primitives (grids of
quads, n-gon caps; see `Primitive.mesh`), posed in arbitrary units and offsets as ModelNet's CAD models are
(not centred, not scaled), and written as ModelNet writes OFF: one file in three carries the counts on the
keyword's line (`OFF490 518 0`), the others on the next line.
"""

from __future__ import annotations

import io
import math

import numpy as np

from .families import make_shape
from .sampling import SPLIT_CODES, stream

TAG_CLASS_TREE = 6
# ModelNet10's classes and the family standing in for each
MODELNET10_FAMILIES = {"bathtub": "sink", "bed": "bed", "chair": "chair", "desk": "desk", "dresser": "cabinet",
                       "monitor": "monitor", "night_stand": "shelf", "sofa": "sofa", "table": "table",
                       "toilet": "toilet"}
FOLDER = "ModelNet10"


def object_mesh(family, rng, segments):
    """(vertices (n, 3), list of (m, k) polygon arrays) of one random object of `family`, in ModelNet-like
    units: scaled by a random factor of 0.5 to 100 and moved off the origin."""
    vertices, polygons, offset = [], [], 0
    for primitive, _ in make_shape(family, rng):
        v, groups = primitive.mesh(segments)
        vertices.append(v)
        polygons += [group + offset for group in groups]
        offset += len(v)
    scale = math.exp(rng.uniform(math.log(0.5), math.log(100.0)))
    shift = rng.uniform(-2.0, 2.0, 3) * scale
    return np.concatenate(vertices) * scale + shift, polygons


def write_off(path, vertices, polygons, counts_on_keyword_line=False):
    """An ascii OFF file of polygons (as ModelNet's: no colours; with `counts_on_keyword_line`, its header
    quirk)."""
    faces = sum(len(group) for group in polygons)
    header = f"OFF{len(vertices)} {faces} 0\n" if counts_on_keyword_line else f"OFF\n{len(vertices)} {faces} 0\n"
    body = io.BytesIO()
    np.savetxt(body, vertices, fmt="%.7g")
    for group in polygons:
        np.savetxt(body, np.concatenate([np.full((len(group), 1), group.shape[1]), group], axis=1), fmt="%d")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.encode() + body.getvalue())


def make_class_tree(root, seed, cfg):
    """ModelNet10/ under `root`: cfg['tree_train'] / cfg['tree_test'] meshes per class and split, at
    cfg['tree_segments'] segments per circle."""
    folder = root / FOLDER
    counts = {"train": 0, "test": 0}
    for label, (name, family) in enumerate(sorted(MODELNET10_FAMILIES.items())):
        for split in ("train", "test"):
            for k in range(cfg[f"tree_{split}"]):
                rng = stream(seed, TAG_CLASS_TREE, SPLIT_CODES[split], label, k)
                vertices, polygons = object_mesh(family, rng, cfg["tree_segments"])
                number = k + 1 + (cfg["tree_train"] if split == "test" else 0)  # ModelNet numbers test after train
                write_off(folder / name / split / f"{name}_{number:04d}.off", vertices, polygons,
                          counts_on_keyword_line=number % 3 == 0)
                counts[split] += 1
    return {**counts, "classes": len(MODELNET10_FAMILIES)}
