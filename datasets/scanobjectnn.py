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


def candidate_copies(root: Path, variant: str) -> list[dict[str, Path]]:
    """Where a copy of the variant's {"train": file, "test": file} may be, in order of preference."""
    folder, suffix = _OFFICIAL[variant]
    bases = [root / "h5_files", root / "ScanObjectNN" / "h5_files", root / "ScanObjectNN", root]
    copies = [{"train": base / folder / f"training_objectdataset{suffix}.h5",
               "test": base / folder / f"test_objectdataset{suffix}.h5"} for base in bases]
    if variant == "OBJ_BG":  # CrossPoint ships OBJ_BG renamed to main_split/{train,test}.h5
        copies += [{split: base / "main_split" / f"{split}.h5" for split in ("train", "test")}
                   for base in (root / "ScanObjectNN", root)]
    return copies


def find_file(root: Path, variant: str, official_split: str) -> Path:
    """The split's file from the first copy that holds either split: train and test never come from two copies
    (two releases may differ), so a copy without this split's file is refused, not completed from another."""
    copies = candidate_copies(root, variant)
    for copy in copies:
        present = [path for path in copy.values() if path.is_file()]
        if present:
            if not copy[official_split].is_file():
                raise DataError(f"{copy[official_split]}: file not found, though {present[0].name} of the same copy "
                                "is there; train and test are never taken from two copies of ScanObjectNN")
            return copy[official_split]
    looked = ", ".join(str(copy[official_split].relative_to(root)) for copy in copies)
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
