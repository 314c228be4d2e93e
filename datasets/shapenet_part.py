"""ShapeNetPart (Yi et al. 2016) from ``shapenet_part_seg_hdf5_data`` (PointNet's HDF5 release)."""

from __future__ import annotations

import numpy as np

from utils.errors import DataError

from .h5 import H5Spec, H5Table, PointCloudDataset, check_split, dataset_dir, listed_files

FOLDER = "shapenet_part_seg_hdf5_data"

CATEGORY_NAMES = ("airplane", "bag", "cap", "car", "chair", "earphone", "guitar", "knife", "lamp", "laptop",
                  "motorbike", "mug", "pistol", "rocket", "skateboard", "table")
PARTS_PER_CATEGORY = (4, 2, 2, 4, 4, 3, 3, 2, 4, 2, 6, 2, 3, 3, 3, 3)
_STARTS = np.concatenate([[0], np.cumsum(PARTS_PER_CATEGORY)[:-1]]).astype(np.int64)
# category -> range of its global part ids (contiguous, 50 in all)
PART_RANGES = {c: range(int(s), int(s) + n) for c, (s, n) in enumerate(zip(_STARTS, PARTS_PER_CATEGORY))}
NUM_PARTS = int(sum(PARTS_PER_CATEGORY))


class ShapeNetPart(PointCloudDataset):
    """ShapeNetPart part segmentation. Items: ``points`` (num_points, 3) float32 (first ``num_points`` of the
    stored 2048), ``category`` int64 scalar 0..15, ``seg`` (num_points,) int64 global part id 0..49.

    ``split`` uses the official files, those named in ``{train,val,test}_hdf5_file_list.txt`` (only those: a
    stray ``ply_data_train0_backup.h5`` beside them is not read): "train", "val" (the official validation set,
    used for checkpoint selection), "trainval" = both (14,007 shapes, for the final fit), "test". Each shape's
    part ids are checked to lie in its category's range.
    """

    num_categories = 16
    num_parts = NUM_PARTS
    category_names = CATEGORY_NAMES
    parts_per_category = PARTS_PER_CATEGORY
    part_ranges = PART_RANGES

    def __init__(self, root, split: str = "train", num_points: int = 2048, transform=None, seed: int = 0):
        super().__init__(transform=transform, seed=seed)
        self.split = check_split(split)
        self.folder = dataset_dir(root, FOLDER)
        groups = {"train": ["train"], "val": ["val"], "trainval": ["train", "val"], "test": ["test"]}[split]
        files = [path for group in groups for path in listed_files(self.folder, f"{group}_hdf5_file_list.txt")]
        spec = H5Spec(channels=3, num_points=num_points, shape_labels={"label": self.num_categories},
                      point_labels={"pid": self.num_parts})
        table = H5Table(files, spec)
        self.files = table.paths
        self.points = table.points
        self.categories = table.shape_labels["label"]
        self.seg = table.point_labels["pid"]
        self._check_parts(table)
        self._shape_items = {"category": self.categories}
        self._point_items = {"seg": self.seg}

    def _check_parts(self, table: H5Table) -> None:
        cat = self.categories.astype(np.int64)
        low = _STARTS[cat][:, None]
        high = low + np.asarray(PARTS_PER_CATEGORY)[cat][:, None]
        bad = np.flatnonzero(((self.seg < low) | (self.seg >= high)).any(axis=1))
        if len(bad):
            i = int(bad[0])
            offsets = np.cumsum([0] + table.sizes)
            f = int(np.searchsorted(offsets, i, side="right") - 1)
            raise DataError(f"{table.paths[f]}: sample {i - offsets[f]} of category {cat[i]} "
                            f"({CATEGORY_NAMES[cat[i]]}) has part ids outside {PART_RANGES[cat[i]]}")
