"""What every reader returns: a `Shape`, and the pieces the mesh readers share (token parsing, fan triangulation)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.errors import DataError


@dataclass
class Shape:
    """A file's geometry. `faces` None (or empty) means the file holds a point set, not a surface."""

    vertices: np.ndarray                 # (n, 3) float64
    faces: np.ndarray | None = None      # (m, 3) int64 triangles, indices into vertices
    colours: np.ndarray | None = None    # (n, 3) float32 in [0, 1], one per vertex

    @property
    def is_mesh(self) -> bool:
        return self.faces is not None and len(self.faces) > 0


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None


def numbers(path: Path, lines: list[bytes], what: str) -> tuple[np.ndarray, np.ndarray]:
    """All numbers of `lines` as one float64 array, and the number of values on each line."""
    counts = np.fromiter(map(len, map(bytes.split, lines)), dtype=np.int64, count=len(lines))
    try:
        values = np.array(b" ".join(lines).split(), dtype=np.float64)
    except ValueError:
        raise DataError(f"{path}: {what} hold something that is not a number") from None
    return values, counts


def rows(values: np.ndarray, counts: np.ndarray, width: int) -> np.ndarray:
    """The first `width` values of every line (each has at least that many): an (n, width) array."""
    if len(counts) and (counts == counts[0]).all():
        return values.reshape(len(counts), counts[0])[:, :width]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return values[starts[:, None] + np.arange(width)]


def polygons(path: Path, sizes: np.ndarray, indices: np.ndarray, vertex_count: int) -> np.ndarray:
    """Triangles (m, 3) int64 of polygons given by their `sizes` and their concatenated vertex `indices`,
    each polygon of n >= 3 corners cut into the fan (v0, v1, v2), (v0, v2, v3), ...; points and lines (n < 3)
    have no area and are left out. An index outside the vertices is a DataError."""
    if len(indices) and (indices.min() < 0 or indices.max() >= vertex_count):
        bad = indices[(indices < 0) | (indices >= vertex_count)][0]
        raise DataError(f"{path}: a face refers to vertex {int(bad)}, but there are {vertex_count} vertices")
    sizes = sizes.astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    if len(sizes) and (sizes == 3).all():
        return indices.reshape(-1, 3).astype(np.int64)
    fans = np.maximum(sizes - 2, 0)
    owner = np.repeat(np.arange(len(sizes)), fans)
    corner = np.arange(int(fans.sum())) - np.repeat(np.cumsum(fans) - fans, fans) + 1
    first = starts[owner]
    return np.stack([indices[first], indices[first + corner], indices[first + corner + 1]], axis=1).astype(np.int64)


def as_indices(path: Path, values: np.ndarray, what: str) -> np.ndarray:
    """Float values that must be whole numbers, as int64."""
    whole = np.rint(values)
    if not np.array_equal(whole, values):
        raise DataError(f"{path}: {what} must be whole numbers")
    return whole.astype(np.int64)


def colour_scale(values: np.ndarray, integer: bool) -> np.ndarray:
    """Colours stored as 0..255 (integers, or any value above 1) or 0..1, as float32 in [0, 1]."""
    scale = 255.0 if integer or values.max(initial=0) > 1 else 1.0
    return np.clip(values / scale, 0, 1).astype(np.float32)
