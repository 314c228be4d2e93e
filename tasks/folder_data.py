"""The class-folder tree as a config section, shared by every task that can read one: frozen-feature
classification, the pretraining monitor and fine-tuned classification (`datasets.class_folder`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datasets.class_folder import ClassFolder
from utils.config import NonNegativeInt, PositiveInt
from utils.errors import ConfigError


@dataclass
class FolderData:
    """`<root>/<class>/{train,test}/<file>`: ModelNet's own tree (ModelNet10.zip, ModelNet40.zip unpacked) or
    any tree of that shape, with meshes or clouds in any format `datasets.formats` reads."""

    root: str | None = None       # the tree's root, e.g. data/ModelNet10
    mesh_points: PositiveInt = 2048  # surface samples per mesh before the subset (ModelNet40's h5 holds 2048)
    sample_seed: int = 0          # seed of the mesh sampling and of the subset of points
    cache_dir: str | None = None  # where the prepared points are cached; null: <root>/.cache, or the user's
    # cache folder (~/.cache/adacrossnet) when the tree is read-only
    workers: NonNegativeInt = 0   # processes preparing files on the first run; 0: one per core (at most 8)
    strict: bool = False          # stop at the first unreadable file instead of skipping it with one line


def folder_title(cfg: FolderData) -> str:
    """What the tree is called in reports: its folder name (e.g. ModelNet10)."""
    return Path(cfg.root).resolve().name if cfg.root else "folder"


def build_folder_dataset(cfg: FolderData, split: str, num_points: int, key: str, transform=None, seed: int = 0):
    """The `split` of the tree `cfg` describes; `key` is the section's dotted name, for the error without a
    root."""
    if not cfg.root:
        raise ConfigError(f"'{key}.root' is not set: give the class-folder tree, e.g. {key}.root=data/ModelNet10")
    return ClassFolder(cfg.root, split, num_points, mesh_points=cfg.mesh_points, sample_seed=cfg.sample_seed,
                       cache_dir=cfg.cache_dir, workers=cfg.workers or None, strict=cfg.strict, transform=transform,
                       seed=seed)
