"""Readers of the files point clouds and meshes come in, one module per format; `read_shape` picks by suffix.

| suffix | reader | holds |
|---|---|---|
| `.ply` | `ply.read_ply` | vertices (+ colours), faces if it has a face element |
| `.pcd` | `pcd.read_pcd` | points (+ colours); ascii, binary, binary_compressed |
| `.off` | `off.read_off` | vertices (+ colours), polygons if any |
| `.obj` | `obj.read_obj` | vertices (+ colours), polygons if any |
| `.stl`, `.glb` | `other_meshes.read_with_trimesh` | a triangle mesh (trimesh) |
| `.npy`, `.npz`, `.xyz`, `.txt`, `.pts`, `.csv` | `arrays` | points (+ colours) |

Every reader returns a `Shape` (vertices, triangles or None, per-vertex colours or None) or raises a DataError
naming the file and the cause. A mesh format without faces is a point set, never an error.
"""

from __future__ import annotations

from pathlib import Path

from utils.errors import DataError

from .arrays import read_array, read_text
from .obj import read_obj
from .off import read_off
from .other_meshes import read_with_trimesh
from .pcd import read_pcd, write_pcd
from .ply import read_ply
from .shape import Shape

READERS = {
    ".ply": read_ply,
    ".pcd": read_pcd,
    ".off": read_off,
    ".obj": read_obj,
    ".stl": read_with_trimesh,
    ".glb": read_with_trimesh,
    ".npy": read_array,
    ".npz": read_array,
    ".xyz": read_text,
    ".txt": read_text,
    ".pts": read_text,
    ".csv": read_text,
}
SUFFIXES = tuple(READERS)

__all__ = ["READERS", "SUFFIXES", "Shape", "read_shape", "write_pcd"]


def read_shape(path: str | Path) -> Shape:
    """The geometry of a file, by its suffix (case-insensitive); a DataError for an unknown suffix or a file that
    is missing, unreadable or malformed."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unknown extension '{path.suffix}' (readable: {' '.join(SUFFIXES)})")
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    return reader(path)
