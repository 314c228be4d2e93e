"""A file as a point cloud, and the deterministic preprocessing that turns a cloud into an encoder's input.

`read_cloud` reads any format of `datasets.formats`: a point set as it is stored, a mesh as `mesh_points`
samples of its surface (area-weighted, seeded). `Preprocessing` is the ModelNet40 evaluation protocol made
deterministic: the same file always gives the same input, whatever the order of its points or its format.
Both the class-folder dataset and the tools use them, so a file embedded by `tools.embed` and the same file
in a class-folder tree give the same encoder input.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from utils.errors import DataError

from .formats import read_shape
from .transforms import NormalizeUnitSphere


def read_cloud(path: str | Path, *, mesh_points: int = 2048, seed: int = 0,
               colours: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """xyz (n, 3) float32 and, with `colours`, rgb (n, 3) float32 in [0, 1] or None when the file has none
    (a mesh's samples have none). A mesh whose faces span no area is read as the point set of its vertices."""
    shape = read_shape(path)
    samples = sample_surface(shape.vertices, shape.faces, mesh_points, seed) if shape.is_mesh else None
    if samples is not None:
        return samples, None
    xyz = np.ascontiguousarray(shape.vertices, dtype=np.float32)
    if len(xyz) == 0:
        raise DataError(f"{path}: no points")
    if not np.isfinite(xyz).all():
        raise DataError(f"{path}: coordinates beyond float32's range (|x| > 3.4e38)")
    return xyz, shape.colours if colours else None


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int) -> np.ndarray | None:
    """`count` points (float32) drawn uniformly on the surface of a triangle mesh, seeded; None when its
    triangles have no area.

    The triangles are put in a canonical order first (each triangle's corners sorted by (x, y, z), then the
    triangles sorted by their nine coordinates, all in float32), so that the samples depend on the surface
    only, not on how a format orders or stores vertices and faces. A triangle is chosen with probability
    proportional to its area, then a point on it by two uniform numbers folded into the triangle.
    """
    triangles = np.asarray(vertices, dtype=np.float64)[faces].astype(np.float32)
    corners = np.lexsort((triangles[..., 2], triangles[..., 1], triangles[..., 0]), axis=-1)
    triangles = np.take_along_axis(triangles, corners[..., None], axis=1)
    flat = triangles.reshape(len(triangles), 9)
    triangles = triangles[np.lexsort(flat.T[::-1])].astype(np.float64)
    origin, edge1, edge2 = triangles[:, 0], triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]
    areas = np.linalg.norm(np.cross(edge1, edge2), axis=1)
    cumulative = np.cumsum(areas)
    if not (len(cumulative) and np.isfinite(cumulative[-1]) and cumulative[-1] > 0):
        return None
    rng = np.random.default_rng(seed)
    chosen = np.minimum(np.searchsorted(cumulative, rng.random(count) * cumulative[-1], side="right"),
                        len(areas) - 1)
    u, v = rng.random((2, count, 1))
    folded = u + v > 1
    u, v = np.where(folded, 1 - u, u), np.where(folded, 1 - v, v)
    points = origin[chosen] + u * edge1[chosen] + v * edge2[chosen]
    return points.astype(np.float32)


@dataclass(frozen=True)
class Preprocessing:
    """How a cloud becomes an encoder input: the ModelNet40 evaluation protocol (unit sphere, a uniform
    subset of the points), made deterministic and independent of the order of the points.

    The points are sorted lexicographically by (x, y, z); `num_points` of them are drawn without replacement
    by a Generator seeded with `seed` (all of them, plus draws with replacement, when there are fewer); the
    whole sorted cloud is centred on its centroid and scaled so its farthest point has norm 1. Meshes are
    first sampled with `mesh_points` points (ModelNet40's clouds are 2,048 surface samples). A cloud with
    fewer than `min_points` distinct points is refused.
    """

    num_points: int = 1024
    seed: int = 0
    mesh_points: int = 2048
    min_points: int = 32

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "normalisation": "unit sphere (centroid, farthest point at 1)",
                           "resampling": "seeded draw over the points sorted by (x, y, z)"}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Preprocessing":
        values = json.loads(text)
        return cls(**{key: values[key] for key in ("num_points", "seed", "mesh_points", "min_points")})

    def read(self, path: str | Path) -> np.ndarray:
        """The encoder input `(num_points, 3)` float32 of a file."""
        return self.prepare(read_cloud(path, mesh_points=self.mesh_points, seed=self.seed)[0], path)

    def prepare(self, xyz: np.ndarray, name: str | Path = "cloud") -> np.ndarray:
        xyz = sort_points(np.asarray(xyz, dtype=np.float32)[:, :3])
        distinct = count_distinct(xyz)
        if distinct < self.min_points:
            raise DataError(f"{name}: {distinct} distinct point{'s' if distinct != 1 else ''}, "
                            f"at least {self.min_points} needed")
        rng = np.random.default_rng(self.seed)
        n = len(xyz)
        if n >= self.num_points:
            pick = rng.choice(n, self.num_points, replace=False)
        else:
            pick = np.concatenate([np.arange(n), rng.choice(n, self.num_points - n, replace=True)])
        return NormalizeUnitSphere()(xyz)[np.sort(pick)]


def read_or_problem(job: tuple[str, Preprocessing]) -> np.ndarray | str:
    """`settings.read(path)` of a `(path, settings)` job, or the one-line reason the file cannot be used. A
    plain function of a light module, so that worker processes can run it without importing torch."""
    path, settings = job
    try:
        return settings.read(path)
    except DataError as error:
        return str(error)
    except Exception as error:  # a reader's own failure must not take a whole dataset's preparation down
        return unexpected_problem(path, error)


def unexpected_problem(path: str | Path, error: Exception) -> str:
    """The one line for a failure that no reader turned into a DataError (a library's own exception)."""
    message = " ".join(str(error).split()) or type(error).__name__
    return f"{path}: cannot read ({type(error).__name__}: {message})"


def sort_points(xyz: np.ndarray) -> np.ndarray:
    """Rows in lexicographic (x, y, z) order: a canonical order that any permutation of them shares."""
    return xyz[np.lexsort((xyz[:, 2], xyz[:, 1], xyz[:, 0]))]


def count_distinct(sorted_xyz: np.ndarray) -> int:
    if len(sorted_xyz) == 0:
        return 0
    return 1 + int(np.count_nonzero((sorted_xyz[1:] != sorted_xyz[:-1]).any(axis=1)))
