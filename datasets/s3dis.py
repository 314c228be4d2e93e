"""S3DIS semantic segmentation from ``indoor3d_sem_seg_hdf5_data`` (PointNet's 1 m x 1 m block release).

Memory: the real release is 23,585 blocks x 4096 x 9 float32 (about 3.5 GB). By default (``in_memory=True``)
only the requested split is loaded, file by file, into one preallocated array: Area-5 train is about 2.5 GB,
test about 1 GB, never a second copy (at most one file, about 150 MB, in flight while loading). In memory is
the default because each block is read once per epoch for 100+ epochs, and PointNet's h5 writer stores the
arrays gzip-compressed in chunks, so reading block by block would decompress whole chunks for every block,
every epoch, in every worker. Forked DataLoader workers share the loaded array copy-on-write (it is never
written). ``in_memory=False`` reads each block from its file on demand (one open handle per process) for
machines that cannot spare the RAM, at a much higher CPU cost per item.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from utils.errors import DataError

from .h5 import (H5Spec, H5Table, PointCloudDataset, as_int_labels, check_finite, check_split, dataset_dir,
                 get_dataset, oneline, open_h5, read_dataset, read_lines)
from .splits import SPLIT_SEED, grouped_val_mask, split_indices

FOLDER = "indoor3d_sem_seg_hdf5_data"
CLASS_NAMES = ("ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa",
               "bookcase", "board", "clutter")
_AREA = re.compile(r"(?<![A-Za-z0-9])Area_(\d+)(?![0-9])")


def room_area(name: str) -> int | None:
    """Area number of a room name such as ``Area_5_office_1`` (exact: Area_1 never matches Area_10)."""
    match = _AREA.search(name)
    return int(match.group(1)) if match else None


def _listed_files(folder: Path) -> list[Path]:
    """The h5 files named in all_files.txt. Its lines carry the folder prefix
    (``indoor3d_sem_seg_hdf5_data/ply_data_all_0.h5``), so they are joined with the folder's parent; a bare
    file name is taken inside the folder."""
    list_path = folder / "all_files.txt"
    paths = []
    for line in read_lines(list_path):
        rel = Path(line.replace("\\", "/"))
        candidates = [folder.parent / rel, folder / rel.name]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise DataError(f"{list_path}: lists '{line}', but {candidates[0]} does not exist")
        paths.append(path)
    if not paths:
        raise DataError(f"{list_path}: lists no files")
    return paths


class S3DIS(PointCloudDataset):
    """S3DIS blocks. Items: ``points`` (num_points, 9) float32 (block-centred xyz, rgb/255, room-normalised
    xyz), ``seg`` (num_points,) int64 class 0..12 (``class_names``).

    A block is in "test" iff its room (``room_filelist.txt``, one line per block) is in Area ``test_area``.
    The other areas form "trainval"; "val" holds about ``val_fraction`` of their rooms (whole rooms, chosen per
    area by a keyed hash of the room name, fixed by ``split_seed``), "train" the rest.
    """

    num_classes = 13
    class_names = CLASS_NAMES

    def __init__(self, root, split: str = "train", test_area: int = 5, num_points: int = 4096, transform=None,
                 seed: int = 0, val_fraction: float = 0.1, split_seed: int = SPLIT_SEED, in_memory: bool = True):
        super().__init__(transform=transform, seed=seed)
        self.split = check_split(split)
        self.test_area = int(test_area)
        self.num_points = int(num_points)
        self.in_memory = bool(in_memory)
        self.folder = dataset_dir(root, FOLDER, markers=("all_files.txt", "room_filelist.txt"))
        files = _listed_files(self.folder)
        rooms_path = self.folder / "room_filelist.txt"
        rooms = read_lines(rooms_path)
        areas = []
        for line_no, name in enumerate(rooms, 1):
            area = room_area(name)
            if area is None:
                raise DataError(f"{rooms_path}: line {line_no} '{name}' names no Area_<n>")
            areas.append(area)
        areas = np.asarray(areas)
        if self.test_area not in set(areas.tolist()):
            raise DataError(f"{rooms_path}: no room of Area_{self.test_area} (areas present: "
                            f"{sorted(set(areas.tolist()))})")

        def select(sizes, _labels):
            if sum(sizes) != len(rooms):
                raise DataError(f"{rooms_path}: {len(rooms)} room names for {sum(sizes)} blocks in the files of "
                                f"{self.folder / 'all_files.txt'}")
            is_test = areas == self.test_area
            if split == "test":
                return np.flatnonzero(is_test)
            pool = np.flatnonzero(~is_test)
            pool_rooms = [rooms[i] for i in pool]
            val = grouped_val_mask(pool_rooms, areas[pool], val_fraction, split_seed) if split != "trainval" \
                else np.zeros(len(pool), dtype=bool)
            return pool[split_indices(split, val)]

        spec = H5Spec(channels=9, num_points=self.num_points, point_labels={"label": self.num_classes})
        self._table = table = H5Table(files, spec, select=select, load=self.in_memory)
        self.files = table.paths
        self.indices = table.index  # positions in the concatenated files (= lines of room_filelist.txt)
        self.rooms = [rooms[i] for i in self.indices]
        if self.in_memory:
            self.points = table.points
            self.seg = table.point_labels["label"]
            self._point_items = {"seg": self.seg}
        self._handles: dict = {}
        self._pid = None

    def __len__(self) -> int:
        return len(self.indices)

    # lazy reading: one handle per file per process (h5py handles must not cross a fork)
    def _file(self, f: int):
        if self._pid != os.getpid():
            self._handles, self._pid = {}, os.getpid()
        if f not in self._handles:
            self._handles[f] = open_h5(self.files[f])
        return self._handles[f]

    def _raw(self, index: int):
        if self.in_memory:
            return super()._raw(index)
        f, row = self._table.locate(int(self.indices[index]))
        path, h5 = self.files[f], self._file(f)
        points = read_dataset(get_dataset(h5, path, "data"), path, "data", np.s_[row, : self.num_points, :])
        points = points.astype(np.float32, copy=False)
        check_finite(points, path, "data")
        labels = read_dataset(get_dataset(h5, path, "label"), path, "label", np.s_[row, : self.num_points])
        labels = as_int_labels(labels, path, "label", self.num_classes)
        return points, {}, {"seg": labels}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handles"], state["_pid"] = {}, None
        return state

    def close(self) -> None:
        for h5 in self._handles.values():
            try:
                h5.close()
            except Exception as error:  # closing a broken handle must not mask the caller's error
                print(f"warning: closing S3DIS file: {oneline(error)}")
        self._handles = {}
