"""What the tools read: files, folders and globs of point clouds and meshes, and benchmark splits as clouds.

The file formats are those of `datasets.formats` (PLY, PCD, OFF, OBJ, STL, GLB, numpy and text tables); a file
becomes an encoder input through `datasets.clouds.Preprocessing`, exactly as in a class-folder dataset.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from datasets.clouds import Preprocessing
from datasets.formats import SUFFIXES
from utils.errors import ConfigError, DataError


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


DATASET_SPLITS = ("train", "val", "trainval", "test")


@dataclass
class BenchmarkSplit:
    """A benchmark split as clouds with labels: `name` is the spec it came from (e.g. modelnet40:test)."""

    name: str
    points: np.ndarray          # (n, P, 3): every stored point, or the encoder inputs when `prepared`
    labels: np.ndarray          # (n,) int64
    class_names: list[str]
    prepared: bool = False      # a class-folder split: its files went through the Preprocessing already

    def path(self, index: int) -> str:
        return f"{self.name}:{index}"


def load_benchmark(spec: str, root: str | Path, settings: Preprocessing | None = None) -> BenchmarkSplit:
    """`modelnet40:SPLIT`, `scanobjectnn:SPLIT`, `scanobjectnn:VARIANT:SPLIT` (under the data root `root`) or
    `folder:PATH:SPLIT` (a class-folder tree, its files prepared with `settings`). SPLIT: train, val, trainval,
    test as the loaders define them; VARIANT OBJ_BG (default), OBJ_ONLY, PB_T50_RS."""
    from datasets import ModelNet40, ScanObjectNN
    from datasets.class_folder import ClassFolder

    if spec.lower().startswith("folder:"):
        tree, _, split = spec[len("folder:"):].rpartition(":")
        if not tree or split not in DATASET_SPLITS:
            raise ConfigError(f"--dataset {spec}: expected folder:PATH:SPLIT with SPLIT one of "
                              f"{', '.join(DATASET_SPLITS)}")
        settings = settings or Preprocessing()
        dataset = ClassFolder(tree, split, num_points=settings.num_points, mesh_points=settings.mesh_points,
                              sample_seed=settings.seed)
        return BenchmarkSplit(spec, dataset.points, dataset.labels, list(dataset.class_names), prepared=True)
    parts = spec.split(":")
    name, split = parts[0].lower(), parts[-1]
    variant = parts[1] if len(parts) == 3 else "OBJ_BG"
    shapes = {"modelnet40": (2,), "scanobjectnn": (2, 3)}
    if name not in shapes or len(parts) not in shapes[name] or split not in DATASET_SPLITS:
        raise ConfigError(f"--dataset {spec}: expected modelnet40:SPLIT, scanobjectnn[:VARIANT]:SPLIT or "
                          f"folder:PATH:SPLIT with SPLIT one of {', '.join(DATASET_SPLITS)}")
    if name == "modelnet40":
        dataset = ModelNet40(root, split=split, num_points=2048)
    else:
        if variant not in ScanObjectNN.variants:
            raise ConfigError(f"--dataset {spec}: unknown ScanObjectNN variant '{variant}' "
                              f"(choose from {', '.join(ScanObjectNN.variants)})")
        dataset = ScanObjectNN(root, variant=variant, split=split, num_points=2048)
    return BenchmarkSplit(spec, np.asarray(dataset.points), np.asarray(dataset.labels, dtype=np.int64).reshape(-1),
                          list(dataset.class_names))


def benchmark_cloud(path: str, root: str | Path, settings: Preprocessing | None = None) -> np.ndarray | None:
    """The stored points of a benchmark entry named as tools.embed names them (`modelnet40:test:12`; for a
    class folder the points `settings` prepared), or None when `path` is not such a name."""
    spec, _, index = path.rpartition(":")
    if not index.isdigit() or not spec.lower().startswith(("modelnet40:", "scanobjectnn:", "folder:")):
        return None
    split = load_benchmark(spec, root, settings)
    if int(index) >= len(split.points):
        raise DataError(f"{path}: {spec} has {len(split.points)} clouds")
    return split.points[int(index)]
