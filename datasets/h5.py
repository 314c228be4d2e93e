"""Shared reading and item logic for the HDF5 point-cloud datasets (ModelNet40, ScanObjectNN, ShapeNetPart,
S3DIS).

Every h5py failure is caught and re-raised as a one-line ``DataError`` that names the file and the cause.
Files are read in two passes so that no dataset is ever held twice: pass 1 opens each file, checks keys and
shapes and reads the small per-shape labels (needed to carve the validation split); pass 2 reads the point
arrays file by file and copies only the selected rows into one preallocated array.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from utils.errors import DataError

from .splits import SPLITS


def oneline(error: BaseException) -> str:
    """An exception's message on one line (h5py and plyfile messages can span several)."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


def checked_index(index, length: int) -> int:
    """`index` as a non-negative int below `length` (negative counts from the end), else IndexError."""
    index = int(index)
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError(index)
    return index


def resolve_root(root) -> Path:
    """Absolute data root (relative roots are taken against the current directory, once, here)."""
    if root is None:
        raise DataError("no data root given")
    path = Path(root).expanduser()
    path = path.resolve() if path.exists() else path.absolute()
    if not path.exists():
        raise DataError(f"{path}: data root not found")
    if not path.is_dir():
        raise DataError(f"{path}: data root is not a folder")
    return path


def dataset_dir(root, folder: str, markers: Sequence[str] = ()) -> Path:
    """``root/folder`` if it exists; ``root`` itself if it is that folder (same name, or holds a marker file)."""
    root = resolve_root(root)
    candidate = root / folder
    if candidate.is_dir():
        return candidate
    if root.name == folder or any((root / m).exists() for m in markers):
        return root
    raise DataError(f"{candidate}: dataset folder not found")


def read_lines(path: Path) -> list[str]:
    """Non-empty stripped lines of a text file; a missing or unreadable file is a DataError."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read ({oneline(error)})") from error
    return [line.strip() for line in text.splitlines() if line.strip()]


def listed_files(folder: Path, list_name: str) -> list[Path]:
    """The h5 files a list file names (ModelNet40's train_files.txt, ShapeNetPart's train_hdf5_file_list.txt):
    only those, never other files that happen to lie in the folder. The lines may carry the original relative
    paths (``data/modelnet40_ply_hdf5_2048/ply_data_train0.h5``), so each is resolved by file name in ``folder``."""
    list_path = folder / list_name
    paths = []
    for line in read_lines(list_path):
        path = folder / Path(line.replace("\\", "/")).name
        if not path.is_file():
            raise DataError(f"{list_path}: lists '{line}', but {path} does not exist")
        paths.append(path)
    if not paths:
        raise DataError(f"{list_path}: lists no files")
    return paths


def check_split(split: str, allowed: Sequence[str] = SPLITS) -> str:
    if split not in allowed:
        raise ValueError(f"split must be one of {tuple(allowed)}, got {split!r}")
    return split


# --------------------------------------------------------------------------------------------- h5 reading


def open_h5(path: Path) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return h5py.File(path, "r")
    except Exception as error:  # h5py raises OSError for truncated / non-HDF5 files, others for odd ones
        raise DataError(f"{path}: not a readable HDF5 file ({oneline(error)})") from error


def get_dataset(h5: h5py.File, path: Path, key: str) -> h5py.Dataset:
    try:
        present = key in h5
        obj = h5[key] if present else None
    except Exception as error:
        raise DataError(f"{path}: cannot access key '{key}' ({oneline(error)})") from error
    if obj is None:
        raise DataError(f"{path}: missing key '{key}'")
    if not isinstance(obj, h5py.Dataset):
        raise DataError(f"{path}: key '{key}' is not a dataset")
    return obj


def read_dataset(ds: h5py.Dataset, path: Path, key: str, selection=()) -> np.ndarray:
    try:
        return np.asarray(ds[selection])
    except Exception as error:
        raise DataError(f"{path}: cannot read '{key}' ({oneline(error)})") from error


def as_int_labels(values: np.ndarray, path: Path, key: str, num_classes: int | None) -> np.ndarray:
    """Integer labels (stored compactly as int16) with their range checked against ``num_classes``."""
    if not np.issubdtype(values.dtype, np.integer):
        if not np.issubdtype(values.dtype, np.floating) or not np.all(np.isfinite(values)) \
                or not np.all(values == np.round(values)):
            raise DataError(f"{path}: '{key}' holds non-integer values (dtype {values.dtype})")
    if values.size:
        low, high = int(values.min()), int(values.max())
        if low < 0 or (num_classes is not None and high >= num_classes):
            limit = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
            raise DataError(f"{path}: '{key}' values {low}..{high} outside {limit}")
    return values.astype(np.int16, copy=False)


def check_finite(points: np.ndarray, path: Path, key: str) -> None:
    if not np.isfinite(points).all():
        bad = int(np.argwhere(~np.isfinite(points))[0][0])
        raise DataError(f"{path}: '{key}' has NaN/Inf coordinates (first in sample {bad})")


# Samples one file may declare. The releases' largest file holds 11,416 (ScanObjectNN PB_T50_RS training; ModelNet40
# and ShapeNetPart files hold 2,048, S3DIS files 1,000). A file declaring more is refused before anything is
# allocated or read: a 1.7 kB gzip file can declare millions of shapes of fill values.
MAX_SAMPLES_PER_FILE = 100_000


class H5Spec:
    """What one family of h5 files must contain.

    points_key: (n, P, channels) float array, the first ``num_points`` of P are used.
    shape_labels: {key: num_classes} per-shape labels, stored (n,) or (n, 1).
    point_labels: {key: num_classes} per-point labels, stored (n, P).
    """

    def __init__(self, channels: int, num_points: int, points_key: str = "data",
                 shape_labels: dict[str, int | None] | None = None,
                 point_labels: dict[str, int | None] | None = None):
        if int(num_points) < 1:
            raise ValueError(f"num_points must be positive, got {num_points}")
        self.channels, self.num_points, self.points_key = channels, int(num_points), points_key
        self.shape_labels = dict(shape_labels or {})
        self.point_labels = dict(point_labels or {})


def _check_file(h5: h5py.File, path: Path, spec: H5Spec) -> int:
    """Validate keys and shapes of one open file; return its number of samples."""
    ds = get_dataset(h5, path, spec.points_key)
    if ds.ndim != 3 or ds.shape[2] != spec.channels:
        raise DataError(f"{path}: '{spec.points_key}' has shape {ds.shape}, expected (n, P, {spec.channels})")
    if ds.shape[1] < spec.num_points:
        raise DataError(f"{path}: '{spec.points_key}' has {ds.shape[1]} points per sample, "
                        f"fewer than num_points={spec.num_points}")
    n = ds.shape[0]
    if n > MAX_SAMPLES_PER_FILE:
        raise DataError(f"{path}: '{spec.points_key}' declares {n} samples, more than the limit of "
                        f"{MAX_SAMPLES_PER_FILE} per file (the releases' largest file holds 11,416)")
    for key in spec.shape_labels:
        lab = get_dataset(h5, path, key)
        if not (lab.shape == (n,) or lab.shape == (n, 1)):
            raise DataError(f"{path}: '{key}' has shape {lab.shape}, expected ({n},) or ({n}, 1)")
    for key in spec.point_labels:
        lab = get_dataset(h5, path, key)
        if lab.ndim != 2 or lab.shape[0] != n or lab.shape[1] < spec.num_points:
            raise DataError(f"{path}: '{key}' has shape {lab.shape}, expected ({n}, >= {spec.num_points})")
    return n


class H5Table:
    """Samples from a list of h5 files, concatenated in list order, restricted to selected rows.

    ``select(sizes, shape_labels)`` receives the per-file sample counts and the full per-shape label arrays
    and returns the sorted global indices to keep (default: all). With ``load=False`` only pass 1 runs
    (keys, shapes and per-shape labels are checked) and ``points`` / ``point_labels`` stay None, for lazy
    per-item reading.
    """

    def __init__(self, paths: Sequence[Path], spec: H5Spec,
                 select: Callable[[list[int], dict[str, np.ndarray]], np.ndarray] | None = None,
                 load: bool = True):
        if not paths:
            raise DataError("no h5 files to read")
        self.paths = [Path(p) for p in paths]
        self.spec = spec
        sizes: list[int] = []
        labels: dict[str, list[np.ndarray]] = {k: [] for k in spec.shape_labels}
        for path in self.paths:  # pass 1: shapes, keys, per-shape labels
            with open_h5(path) as h5:
                sizes.append(_check_file(h5, path, spec))
                for key, num_classes in spec.shape_labels.items():
                    values = read_dataset(get_dataset(h5, path, key), path, key).reshape(-1)
                    labels[key].append(as_int_labels(values, path, key, num_classes))
        self.sizes = sizes
        self.all_shape_labels = {k: np.concatenate(v) if v else np.zeros(0, np.int16) for k, v in labels.items()}
        total = int(sum(sizes))
        index = np.arange(total) if select is None else np.asarray(select(sizes, self.all_shape_labels))
        self.index = np.sort(index.astype(np.int64))  # global indices (into the concatenated files) kept
        self.shape_labels = {k: v[self.index] for k, v in self.all_shape_labels.items()}
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.points = None
        self.point_labels = None
        if load:
            self.points = np.empty((len(self.index), spec.num_points, spec.channels), dtype=np.float32)
            self.point_labels = {k: np.empty((len(self.index), spec.num_points), dtype=np.int16)
                                 for k in spec.point_labels}
            self._read_arrays()

    def locate(self, global_index: int) -> tuple[int, int]:
        """(file number, row in that file) of a global index."""
        f = int(np.searchsorted(self.offsets, global_index, side="right") - 1)
        return f, int(global_index - self.offsets[f])

    def _read_arrays(self) -> None:  # pass 2: one file at a time, selected rows only
        spec = self.spec
        offset = 0
        for path, n in zip(self.paths, self.sizes):
            lo, hi = np.searchsorted(self.index, [offset, offset + n])
            rows = self.index[lo:hi] - offset
            if len(rows):
                with open_h5(path) as h5:
                    ds = get_dataset(h5, path, spec.points_key)
                    dest = self.points[lo:hi]
                    source = np.s_[:, : spec.num_points, :]
                    if len(rows) == n:  # whole file kept: decode straight into the output, no temporary
                        try:
                            ds.read_direct(dest, source_sel=source)
                        except Exception as error:
                            raise DataError(f"{path}: cannot read '{spec.points_key}' ({oneline(error)})") \
                                from error
                        check_finite(dest, path, spec.points_key)
                    else:
                        block = read_dataset(ds, path, spec.points_key, source)
                        check_finite(block, path, spec.points_key)
                        np.take(block, rows, axis=0, out=dest)
                        del block
                    for key, num_classes in spec.point_labels.items():
                        ds = get_dataset(h5, path, key)
                        values = read_dataset(ds, path, key, np.s_[:, : spec.num_points])
                        self.point_labels[key][lo:hi] = as_int_labels(values, path, key, num_classes)[rows]
            offset += n


# ------------------------------------------------------------------------------------------ dataset base


class PointCloudDataset(Dataset):
    """Base for the h5 datasets: arrays -> item dicts, optional ``transform(points, rng)``.

    Item ``i`` draws its randomness (only used by ``transform``) from
    ``numpy.random.default_rng((seed, epoch, i))``; call ``set_epoch`` once per epoch. Subclasses either set
    ``self.points`` (n, N, C) float32, ``self._shape_items`` {item key: (n,) ints} and ``self._point_items``
    {item key: (n, N) ints}, or override ``__len__`` and ``_raw``. A transform must keep the number and order
    of points (per-point labels are not permuted with them).
    """

    points: np.ndarray | None = None

    def __init__(self, transform=None, seed: int = 0):
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        self._shape_items: dict[str, np.ndarray] = {}
        self._point_items: dict[str, np.ndarray] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.points)

    def _raw(self, index: int) -> tuple[np.ndarray, dict[str, int], dict[str, np.ndarray]]:
        """(points (N, C), {key: per-shape label}, {key: per-point labels (N,)}) of item ``index``."""
        return (self.points[index],
                {k: int(v[index]) for k, v in self._shape_items.items()},
                {k: v[index] for k, v in self._point_items.items()})

    def __getitem__(self, index: int) -> dict:
        index = checked_index(index, len(self))
        points, shape_labels, point_labels = self._raw(index)
        if self.transform is not None:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            n = len(points)
            points = self.transform(points, rng)
            if len(points) != n:
                raise ValueError(f"transform changed the number of points ({n} -> {len(points)})")
        item = {"points": torch.from_numpy(np.array(points, dtype=np.float32, copy=True))}
        for key, value in shape_labels.items():
            item[key] = torch.tensor(value, dtype=torch.int64)
        for key, values in point_labels.items():
            item[key] = torch.from_numpy(values.astype(np.int64))
        return item
