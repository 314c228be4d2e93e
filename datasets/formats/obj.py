"""Wavefront OBJ: the geometry of `v` and `f` lines, read without trimesh.

    v x y z [w | r g b]      a vertex; three values after xyz are read as a colour (a common extension)
    f a b c ...              a polygon; each corner is `i`, `i/t`, `i/t/n` or `i//n`, 1-based, negative
                             indices counted back from the last vertex defined so far

Polygons are cut into triangle fans. Everything else (normals, texture coordinates, groups, materials, lines,
points) is read past. A file with `v` lines and no faces is a point set.

Reference: the OBJ specification (Wavefront Technologies, "Object Files (.obj)", Advanced Visualizer manual).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from utils.errors import DataError

from .shape import Shape, as_indices, colour_scale, numbers, polygons, read_bytes, rows

_CORNER_TAIL = re.compile(rb"/\S*")  # the texture and normal references of a corner


def read_obj(path: str | Path) -> Shape:
    path = Path(path)
    vertex_lines: list[bytes] = []
    face_lines: list[bytes] = []
    defined_before: list[int] = []  # vertices defined before each face, for negative indices
    for line in read_bytes(path).split(b"\n"):
        line = line.strip()
        tag = line[:2]
        if tag in (b"v ", b"v\t"):
            vertex_lines.append(line[2:])
        elif tag in (b"f ", b"f\t"):
            face_lines.append(_CORNER_TAIL.sub(b"", line[2:]))
            defined_before.append(len(vertex_lines))
    if not vertex_lines:
        raise DataError(f"{path}: OBJ file has no vertices ('v' lines)")
    values, widths = numbers(path, vertex_lines, "OBJ vertex lines")
    if widths.min() < 3:
        raise DataError(f"{path}: OBJ vertex line {int(np.argmax(widths < 3)) + 1} has fewer than 3 coordinates")
    vertices = rows(values, widths, 3)
    if not np.isfinite(vertices).all():
        raise DataError(f"{path}: NaN/Inf vertex coordinates")
    colours = colour_scale(rows(values, widths, 6)[:, 3:], integer=False) if widths.min() >= 6 else None
    faces = None
    if face_lines:
        values, sizes = numbers(path, face_lines, "OBJ face lines")
        indices = as_indices(path, values, "OBJ vertex indices")
        if (indices == 0).any():
            raise DataError(f"{path}: an OBJ face refers to vertex 0; OBJ indices start at 1")
        base = np.repeat(np.asarray(defined_before, dtype=np.int64), sizes)
        indices = np.where(indices > 0, indices - 1, base + indices)
        faces = polygons(path, sizes, indices, len(vertices))
    return Shape(vertices, faces, colours)
