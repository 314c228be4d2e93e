"""ModelNet40 from ``modelnet40_ply_hdf5_2048`` (PointNet's HDF5 release)."""

from __future__ import annotations

from utils.errors import DataError

from .h5 import H5Spec, H5Table, PointCloudDataset, check_split, dataset_dir, listed_files, read_lines
from .splits import SPLIT_SEED, stratified_selector

FOLDER = "modelnet40_ply_hdf5_2048"


class ModelNet40(PointCloudDataset):
    """ModelNet40 classification. Items: ``points`` (num_points, 3) float32 (the first ``num_points`` of the
    stored 2048, as in the standard protocol), ``label`` int64 scalar 0..39.

    ``split``: "train" (official train minus a held-out val part), "val", "trainval" (full official train),
    "test". ``val_fraction`` of each class goes to "val", fixed by ``split_seed`` (independent of ``seed``).
    ``root`` is the data root holding ``modelnet40_ply_hdf5_2048/`` (or that folder itself).
    """

    num_classes = 40

    def __init__(self, root, split: str = "train", num_points: int = 1024, transform=None, seed: int = 0,
                 val_fraction: float = 0.1, split_seed: int = SPLIT_SEED):
        super().__init__(transform=transform, seed=seed)
        self.split = check_split(split)
        self.folder = dataset_dir(root, FOLDER, markers=("shape_names.txt", "train_files.txt"))
        names_path = self.folder / "shape_names.txt"
        self.class_names = read_lines(names_path)
        if len(self.class_names) != self.num_classes:
            raise DataError(f"{names_path}: {len(self.class_names)} names, expected {self.num_classes}")
        files = listed_files(self.folder, "test_files.txt" if split == "test" else "train_files.txt")

        spec = H5Spec(channels=3, num_points=num_points, shape_labels={"label": self.num_classes})
        chooser = None if split == "test" else stratified_selector(split, val_fraction, split_seed)
        table = H5Table(files, spec, select=chooser)
        self.files = table.paths
        self.indices = table.index  # positions in the concatenated official files
        self.points = table.points
        self.labels = table.shape_labels["label"]
        self._shape_items = {"label": self.labels}

