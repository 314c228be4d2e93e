"""Point clouds from files, and the deterministic preprocessing that turns one into an encoder's input.

Readers return xyz `(n, 3)` float32 and, where the file has them, colours `(n, 3)` float32 in [0, 1]:

* `.ply` (plyfile; binary or ascii, any further vertex properties): the vertex element's x, y, z (a mesh PLY
  gives its vertices) and red, green, blue when present;
* `.npy`, `.npz`: one `(n, 3+)` array (an npz holding several must call it `points`); columns 3:6, when
  present, are colours (0..255 when any exceeds 1, else 0..1);
* `.xyz`, `.txt`, `.pts`, `.csv`: whitespace- or comma-separated rows, the first three columns xyz and
  columns 3:6 colours as above; leading lines that are not rows of numbers (a header, a point count) are
  skipped, and so are `#` comments;
* `.obj`, `.off`, `.stl`, `.glb`: meshes read by trimesh and sampled on their surface (area-weighted,
  seeded). The triangles are put in a canonical order first (corners and triangles sorted by coordinate),
  so the samples depend on the surface only, not on how a format orders vertices and faces.

Every failure is a DataError naming the file and the cause.
"""

from __future__ import annotations

import glob
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from datasets.h5 import oneline
from datasets.shapenet_render import read_ply_points
from datasets.transforms import NormalizeUnitSphere
from utils.errors import DataError

POINT_SUFFIXES = (".ply", ".npy", ".npz", ".xyz", ".txt", ".pts", ".csv")
MESH_SUFFIXES = (".obj", ".off", ".stl", ".glb")
SUFFIXES = POINT_SUFFIXES + MESH_SUFFIXES
_HEADER_LINES = 10  # leading non-numeric lines skipped in a text file, at most


def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Files, folders (searched recursively for the supported suffixes) and globs, in the order given, each
    expansion sorted, duplicates dropped. A path that does not exist and a glob without a match are kept as
    they are, so that reading them reports the problem like any other bad input."""
    found: dict[Path, None] = {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
        elif not path.exists() and glob.has_magic(item):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file()) or [path]
        else:
            matches = [path]
        found.update(dict.fromkeys(matches))
    return list(found)


def read_cloud(path: str | Path, *, mesh_points: int = 2048, seed: int = 0,
               colours: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """xyz (n, 3) float32 and, with `colours`, rgb (n, 3) float32 in [0, 1] or None when the file has none."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unknown extension '{path.suffix}' (readable: {' '.join(SUFFIXES)})")
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    if suffix == ".ply":
        xyz, rgb = (_read_ply_colours(path) if colours else (read_ply_points(path), None))
    elif suffix in MESH_SUFFIXES:
        xyz, rgb = _sample_mesh(path, mesh_points, seed), None
    else:
        table = _read_array(path) if suffix in (".npy", ".npz") else _read_text(path)
        xyz = np.ascontiguousarray(table[:, :3], dtype=np.float32)
        rgb = _colour_columns(path, table[:, 3:6]) if colours and table.shape[1] >= 6 else None
    if len(xyz) == 0:
        raise DataError(f"{path}: no points")
    if not np.isfinite(xyz).all():
        raise DataError(f"{path}: NaN/Inf coordinates")
    return xyz, rgb


def _read_ply_colours(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    import plyfile

    try:
        vertex = plyfile.PlyData.read(str(path))["vertex"].data
    except KeyError:
        raise DataError(f"{path}: PLY has no 'vertex' element") from None
    except Exception as error:  # plyfile raises PlyParseError, ValueError, EOFError, ... for bad files
        raise DataError(f"{path}: cannot read PLY ({oneline(error)})") from None
    names = vertex.dtype.names or ()
    missing = [axis for axis in "xyz" if axis not in names]
    if missing:
        raise DataError(f"{path}: PLY vertex element lacks {', '.join(missing)}")
    xyz = np.stack([vertex[axis] for axis in "xyz"], axis=1).astype(np.float32)
    if not all(channel in names for channel in ("red", "green", "blue")):
        return xyz, None
    rgb = np.stack([vertex[channel] for channel in ("red", "green", "blue")], axis=1)
    scale = np.iinfo(rgb.dtype).max if rgb.dtype.kind in "iu" else (255.0 if rgb.max(initial=0) > 1 else 1.0)
    return xyz, np.clip(rgb.astype(np.float32) / np.float32(scale), 0, 1)


def _colour_columns(path: Path, columns: np.ndarray) -> np.ndarray:
    if not np.isfinite(columns).all():
        raise DataError(f"{path}: NaN/Inf in the colour columns 4-6")
    scale = 255.0 if columns.max(initial=0) > 1 else 1.0
    return np.clip(columns.astype(np.float32) / np.float32(scale), 0, 1)


def _read_array(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as stream:
            loaded = np.load(stream, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                with loaded:
                    keys = loaded.files
                    if len(keys) != 1 and "points" not in keys:
                        raise DataError(f"{path}: npz holds {', '.join(keys) or 'no arrays'}; name the cloud "
                                        "'points' (or store only it)")
                    array = loaded["points" if "points" in keys else keys[0]]
            else:
                array = loaded
    except DataError:
        raise
    except ValueError as error:
        raise DataError(f"{path}: cannot read ({oneline(error)}; object arrays are not loaded)") from None
    except Exception as error:  # truncated or foreign bytes: OSError, EOFError, zipfile.BadZipFile, ...
        raise DataError(f"{path}: cannot read ({type(error).__name__}: {oneline(error)})") from None
    if array.ndim != 2 or array.shape[1] < 3 or array.dtype.kind not in "fiu":
        raise DataError(f"{path}: expected an (N, 3+) numeric array, got {array.shape} {array.dtype}")
    return array


def _read_text(path: Path) -> np.ndarray:
    try:
        text = path.read_bytes().replace(b",", b" ").replace(b";", b" ")
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    lines = text.splitlines()
    start = 0
    for start, line in enumerate(lines[:_HEADER_LINES]):
        words = line.split(b"#", 1)[0].split()
        try:
            if len(words) >= 3:
                [float(word) for word in words[:3]]
                break
        except ValueError:
            continue
    else:
        raise DataError(f"{path}: no row of three numbers in its first {_HEADER_LINES} lines")
    try:
        table = np.loadtxt(io.BytesIO(b"\n".join(lines[start:])), dtype=np.float64, comments="#", ndmin=2)
    except ValueError as error:
        raise DataError(f"{path}: malformed rows ({oneline(error)})") from None
    if table.shape[1] < 3:
        raise DataError(f"{path}: rows have {table.shape[1]} columns, need at least 3 (x y z)")
    return table


def _sample_mesh(path: Path, count: int, seed: int) -> np.ndarray:
    import trimesh

    try:
        mesh = trimesh.load(str(path), force="mesh")
    except Exception as error:  # trimesh raises many kinds for bad or foreign bytes
        raise DataError(f"{path}: cannot read mesh ({type(error).__name__}: {oneline(error)})") from None
    faces = np.asarray(getattr(mesh, "faces", np.zeros((0, 3))), dtype=np.int64)
    vertices = np.asarray(getattr(mesh, "vertices", np.zeros((0, 3))), dtype=np.float64)
    if faces.size == 0:
        raise DataError(f"{path}: mesh has no faces")
    triangles = vertices[faces].astype(np.float32)
    if not np.isfinite(triangles).all():
        raise DataError(f"{path}: NaN/Inf vertex coordinates")
    corners = np.lexsort((triangles[..., 2], triangles[..., 1], triangles[..., 0]), axis=-1)
    triangles = np.take_along_axis(triangles, corners[..., None], axis=1)
    flat = triangles.reshape(len(triangles), 9)
    triangles = triangles[np.lexsort(flat.T[::-1])]
    canonical = trimesh.Trimesh(vertices=triangles.reshape(-1, 3).astype(np.float64),
                                faces=np.arange(3 * len(triangles)).reshape(-1, 3), process=False)
    if not canonical.area > 0:
        raise DataError(f"{path}: mesh has no surface area")
    points, _ = trimesh.sample.sample_surface(canonical, count, seed=seed)
    return points.astype(np.float32)


# ---------------------------------------------------------------------------------------- preprocessing
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


def sort_points(xyz: np.ndarray) -> np.ndarray:
    """Rows in lexicographic (x, y, z) order: a canonical order that any permutation of them shares."""
    return xyz[np.lexsort((xyz[:, 2], xyz[:, 1], xyz[:, 0]))]


def count_distinct(sorted_xyz: np.ndarray) -> int:
    if len(sorted_xyz) == 0:
        return 0
    return 1 + int(np.count_nonzero((sorted_xyz[1:] != sorted_xyz[:-1]).any(axis=1)))


# ----------------------------------------------------------------------------------------- benchmark sets
DATASET_SPLITS = ("train", "val", "trainval", "test")


@dataclass
class BenchmarkSplit:
    """A benchmark split as clouds with labels: `name` is the spec it came from (e.g. modelnet40:test)."""

    name: str
    points: np.ndarray          # (n, P, 3), every stored point
    labels: np.ndarray          # (n,) int64
    class_names: list[str]

    def path(self, index: int) -> str:
        return f"{self.name}:{index}"


def load_benchmark(spec: str, root: str | Path) -> BenchmarkSplit:
    """`modelnet40:SPLIT`, `scanobjectnn:SPLIT` or `scanobjectnn:VARIANT:SPLIT` (SPLIT: train, val, trainval,
    test as the loaders define them; VARIANT OBJ_BG (default), OBJ_ONLY, PB_T50_RS) under the data root."""
    from datasets import ModelNet40, ScanObjectNN
    from utils.errors import ConfigError

    parts = spec.split(":")
    name, split = parts[0].lower(), parts[-1]
    variant = parts[1] if len(parts) == 3 else "OBJ_BG"
    shapes = {"modelnet40": (2,), "scanobjectnn": (2, 3)}
    if name not in shapes or len(parts) not in shapes[name] or split not in DATASET_SPLITS:
        raise ConfigError(f"--dataset {spec}: expected modelnet40:SPLIT or scanobjectnn[:VARIANT]:SPLIT with SPLIT "
                          f"one of {', '.join(DATASET_SPLITS)}")
    if name == "modelnet40":
        dataset = ModelNet40(root, split=split, num_points=2048)
        class_names = list(dataset.class_names)
    else:
        if variant not in ScanObjectNN.variants:
            raise ConfigError(f"--dataset {spec}: unknown ScanObjectNN variant '{variant}' "
                              f"(choose from {', '.join(ScanObjectNN.variants)})")
        dataset = ScanObjectNN(root, variant=variant, split=split, num_points=2048)
        class_names = list(dataset.class_names)
    return BenchmarkSplit(spec, np.asarray(dataset.points), np.asarray(dataset.labels, dtype=np.int64).reshape(-1),
                          class_names)


def benchmark_cloud(path: str, root: str | Path) -> np.ndarray | None:
    """The stored points of a benchmark entry named as tools.embed names them (`modelnet40:test:12`), or
    None when `path` is not such a name."""
    spec, _, index = path.rpartition(":")
    if not index.isdigit() or not spec.lower().startswith(("modelnet40:", "scanobjectnn:")):
        return None
    split = load_benchmark(spec, root)
    if int(index) >= len(split.points):
        raise DataError(f"{path}: {spec} has {len(split.points)} clouds")
    return split.points[int(index)]
