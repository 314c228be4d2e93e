"""OFF (Geomview's Object File Format), the format of ModelNet's meshes: read in full, without trimesh.

    [ST][C][N]OFF            optional keyword: texture coordinates, colours, normals per vertex
    V F E                    counts (E is ignored); ModelNet writes them on the keyword's line: `OFF490 518 0`
    x y z [nx ny nz] [r g b [a]] [s t]     V vertex lines
    n i1 ... in [colour]                   F face lines: polygons of any size, an optional colour

`#` starts a comment anywhere; blank lines are skipped. Polygons are cut into triangle fans; faces of fewer
than three corners (points, lines) have no area and are left out. A file with no faces is a point set
(CGAL and others store samples so). Per-vertex colours (COFF) are kept; per-face colours are read past.
The keyword is optional, as in Geomview's specification. Homogeneous (4OFF), n-dimensional (nOFF) and binary
OFF are refused with one line: no dataset this repo knows uses them.

Reference: the OFF specification of Geomview (geomview.org/docs/html/OFF.html); ModelNet: Wu et al.,
"3D ShapeNets", CVPR 2015.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from utils.errors import DataError

from .shape import Shape, as_indices, colour_scale, numbers, polygons, read_bytes, rows

_KEYWORD = re.compile(rb"(ST)?(C)?(N)?(4)?(n)?OFF(\s+BINARY\b)?(.*)")
_COMMENT = re.compile(rb"#[^\n]*")


def read_off(path: str | Path) -> Shape:
    path = Path(path)
    data = read_bytes(path)
    if b"#" in data:
        data = _COMMENT.sub(b"", data)
    lines = [line for line in data.split(b"\n") if line.strip()]
    if not lines:
        raise DataError(f"{path}: empty OFF file")
    keyword = _KEYWORD.fullmatch(lines[0].strip())
    colours = normals = False
    if keyword is not None:
        texture, colours, normals, homogeneous, dimension, binary, rest = keyword.groups()
        if binary or homogeneous or dimension:
            raise DataError(f"{path}: {lines[0].strip()[:20].decode('ascii', 'replace')} OFF (binary, homogeneous "
                            "or n-dimensional) is not supported; convert it to a plain ascii OFF")
        header, body = (rest, lines[1:]) if rest.strip() else (lines[1] if len(lines) > 1 else b"", lines[2:])
    else:  # the keyword is optional
        header, body = lines[0], lines[1:]
    counts = header.split()
    try:
        vertex_count, face_count = int(counts[0]), int(counts[1])
    except (IndexError, ValueError):
        raise DataError(f"{path}: not an OFF file (no vertex and face counts after the OFF keyword, found "
                        f"'{header.strip()[:40].decode('ascii', 'replace')}')") from None
    if vertex_count < 0 or face_count < 0:
        raise DataError(f"{path}: OFF declares {vertex_count} vertices and {face_count} faces")
    if vertex_count + face_count > len(body):
        raise DataError(f"{path}: OFF declares {vertex_count} vertices and {face_count} faces, but the file has "
                        f"only {len(body)} lines after its header (truncated)")
    values, widths = numbers(path, body[:vertex_count], "OFF vertex lines")
    if vertex_count and widths.min() < 3:
        raise DataError(f"{path}: OFF vertex line {int(np.argmax(widths < 3)) + 1} has fewer than 3 coordinates")
    vertices = rows(values, widths, 3)
    if not np.isfinite(vertices).all():
        raise DataError(f"{path}: NaN/Inf vertex coordinates")
    rgb = None
    first = 6 if normals else 3
    if colours and vertex_count and widths.min() >= first + 3:
        rgb = colour_scale(rows(values, widths, first + 3)[:, first:], integer=False)
    faces = None
    if face_count:
        values, widths = numbers(path, body[vertex_count:vertex_count + face_count], "OFF face lines")
        starts = np.concatenate([[0], np.cumsum(widths)[:-1]])
        sizes = as_indices(path, values[starts], "OFF face sizes")
        if (sizes < 0).any() or (sizes + 1 > widths).any():
            line = int(np.argmax((sizes < 0) | (sizes + 1 > widths)))
            raise DataError(f"{path}: OFF face {line + 1} says it has {int(sizes[line])} corners but lists "
                            f"{int(widths[line]) - 1} numbers")
        corner = np.repeat(starts + 1, sizes) + np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes,
                                                                                      sizes)
        faces = polygons(path, sizes, as_indices(path, values[corner], "OFF vertex indices"), vertex_count)
    return Shape(vertices, faces, rgb)
