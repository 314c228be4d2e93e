"""ScanObjectNN (Uy et al. 2019) from its HDF5 release, under the official or CrossPoint's file names."""

from __future__ import annotations

from pathlib import Path

from utils.errors import DataError

from .h5 import H5Spec, H5Table, PointCloudDataset, check_split, resolve_root
from .splits import SPLIT_SEED, stratified_selector

CLASS_NAMES = ("bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table", "bed",
               "pillow", "sink", "sofa", "toilet")

# variant -> (folder, file suffix) in the official h5_files release
_OFFICIAL = {
    "OBJ_BG": ("main_split", ""),
    "OBJ_ONLY": ("main_split_nobg", ""),
    "PB_T50_RS": ("main_split", "_augmentedrot_scale75"),
}


def candidate_files(root: Path, variant: str, official_split: str) -> list[Path]:
    """Where the file for (variant, "train"|"test") may be, in order of preference."""
    folder, suffix = _OFFICIAL[variant]
    stem = "training" if official_split == "train" else "test"
    name = f"{stem}_objectdataset{suffix}.h5"
    bases = [root / "h5_files", root / "ScanObjectNN" / "h5_files", root / "ScanObjectNN", root]
    paths = [base / folder / name for base in bases]
    if variant == "OBJ_BG":  # CrossPoint ships OBJ_BG renamed to main_split/{train,test}.h5
        paths += [root / "ScanObjectNN" / "main_split" / f"{official_split}.h5",
                  root / "main_split" / f"{official_split}.h5"]
    return paths


def find_file(root: Path, variant: str, official_split: str) -> Path:
    candidates = candidate_files(root, variant, official_split)
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(p.relative_to(root)) for p in candidates)
    raise DataError(f"{root}: no ScanObjectNN {variant} {official_split} file; looked for {looked}")


class ScanObjectNN(PointCloudDataset):
    """ScanObjectNN classification, 15 classes. Items: ``points`` (num_points, 3) float32 (first
    ``num_points`` of 2048), ``label`` int64 scalar 0..14.

    ``variant``: "OBJ_BG" (main_split), "OBJ_ONLY" (main_split_nobg), "PB_T50_RS" (augmentedrot_scale75).
    Files are looked up under the official names (``h5_files/<folder>/training_objectdataset*.h5``,
    ``test_objectdataset*.h5``) and, for OBJ_BG, CrossPoint's ``ScanObjectNN/main_split/{train,test}.h5``.
    ``split``: "train" / "val" (carved from the official train, stratified) / "trainval" / "test".
    """

    num_classes = 15
    class_names = CLASS_NAMES
    variants = tuple(_OFFICIAL)

    def __init__(self, root, variant: str = "OBJ_BG", split: str = "train", num_points: int = 2048,
                 transform=None, seed: int = 0, val_fraction: float = 0.1, split_seed: int = SPLIT_SEED):
        super().__init__(transform=transform, seed=seed)
        if variant not in _OFFICIAL:
            raise ValueError(f"variant must be one of {tuple(_OFFICIAL)}, got {variant!r}")
        self.variant = variant
        self.split = check_split(split)
        self.root = resolve_root(root)
        self.file = find_file(self.root, variant, "test" if split == "test" else "train")
        spec = H5Spec(channels=3, num_points=num_points, shape_labels={"label": self.num_classes})
        chooser = None if split == "test" else stratified_selector(split, val_fraction, split_seed)
        table = H5Table([self.file], spec, select=chooser)
        self.indices = table.index
        self.points = table.points
        self.labels = table.shape_labels["label"]
        self._shape_items = {"label": self.labels}
