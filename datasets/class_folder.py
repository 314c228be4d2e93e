"""A classification dataset laid out as class folders: ModelNet's own tree, and any tree of that shape.

    <root>/<class>/train/<file>       e.g. ModelNet40/chair/train/chair_0001.off (Princeton's ModelNet40.zip)
    <root>/<class>/test/<file>

Class names are the folder names, sorted; files are any format `datasets.formats` reads (.off meshes, .ply,
.pcd, .npy, .xyz, ...). Each file becomes `num_points` points by `datasets.clouds.Preprocessing`: a mesh is
sampled on its surface (`mesh_points` samples, seeded), a cloud is taken as stored, then a seeded subset is
drawn and the cloud is centred and scaled into the unit sphere, as the h5 releases are. So a file gives the
same points here as in `tools.embed`.

Preparing a file is done once: the prepared points are cached, one file per split and settings, under
`cache_dir`. A second run reads the cache; an entry is redone when its file's size or modification time
changes, and a change of the settings (points, mesh samples, seed) starts another cache file. By default the
cache lives in `<root>/.cache/`, or, when the tree is read-only (no write permission bits, or a read-only
mount), in `$XDG_CACHE_HOME/adacrossnet/` (default `~/.cache/adacrossnet/`) under the tree's name and a hash
of its path. Processes building the same cache at once (torchrun ranks) take turns on a lock file: the first
prepares, the others read what it wrote.

Splits as for ModelNet40 (datasets/splits.py): "train" is the official train folder minus a validation part
of `val_fraction` per class chosen by a keyed hash, "val" that part, "trainval" the whole train folder, "test"
the test folder.

Problems get one line each. A file that cannot be read (malformed, empty, too few distinct points) is
skipped and counted (`skipped`), or, with `strict`, stops the construction with a DataError. A tree without
class folders, a class without its train or test folder, or a split folder without a readable file is a
DataError naming the folder. Entries that are not part of the layout (a README beside the classes, a stray
file of another type) are ignored and listed in one note.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from multiprocessing import get_all_start_methods, get_context
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from utils.errors import DataError
from utils.files import atomic_write, make_folder

from .clouds import Preprocessing, read_or_problem
from .formats import SUFFIXES
from .h5 import PointCloudDataset, check_split, oneline, resolve_root
from .splits import SPLIT_SEED, split_indices, stratified_val_mask

SPLIT_FOLDERS = ("train", "test")
CACHE_VERSION = 1  # bump when reading or preparing a file changes its result


@dataclass
class Tree:
    """What a scan of a class-folder tree found: classes, their files per split folder, what was ignored."""

    root: Path
    classes: list[str]
    files: dict[str, list[tuple[Path, int]]]     # split folder -> [(file, class index)], in class then name order
    ignored: list[str] = field(default_factory=list)


def natural_key(path: Path):
    """Sort key that puts chair_2.off before chair_10.off."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.as_posix())]


def scan_tree(root: str | os.PathLike, splits: tuple[str, ...] = SPLIT_FOLDERS) -> Tree:
    """The classes and files of `<root>/<class>/{train,test}/`; a DataError for a broken layout (see module)."""
    root = resolve_root(root)
    ignored: list[str] = []
    classes = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith(".") or entry.name.startswith("__"):
            continue  # hidden: our cache, .DS_Store, __MACOSX
        if entry.is_dir():
            classes.append(entry.name)
        else:
            ignored.append(entry.name)
    if not classes:
        raise DataError(f"{root}: no class folders; a class-folder tree is <root>/<class>/{{train,test}}/<file>")
    files: dict[str, list[tuple[Path, int]]] = {split: [] for split in splits}
    for label, name in enumerate(classes):
        folder = root / name
        subfolders = {entry.name: entry for entry in os.scandir(folder)}
        missing = [split for split in splits if split not in subfolders or not subfolders[split].is_dir()]
        if missing:
            raise DataError(f"{folder}: no '{missing[0]}' folder; a class-folder tree is "
                            f"<root>/<class>/{{{','.join(splits)}}}/<file> (class '{name}' has "
                            f"{', '.join(sorted(set(subfolders) - set(missing))) or 'nothing'})")
        ignored += [f"{name}/{other}" for other in sorted(subfolders) if other not in splits
                    and not other.startswith(".")]
        for split in splits:
            found = []
            for path in sorted((folder / split).rglob("*"), key=natural_key):
                if not path.is_file() or path.name.startswith("."):
                    continue
                if path.suffix.lower() in SUFFIXES:
                    found.append((path, label))
                else:
                    ignored.append(str(path.relative_to(root)))
            if not found:
                raise DataError(f"{folder / split}: no point cloud or mesh files (class '{name}' must have its "
                                f"{split} shapes there; readable: {' '.join(SUFFIXES)})")
            files[split] += found
    return Tree(root, classes, files, ignored)


class ClassFolder(PointCloudDataset):
    """Class-folder classification data. Items: `points` (num_points, 3) float32, `label` int64 scalar.

    Attributes: `class_names`, `num_classes`, `files` (the items' source files), `labels`, `points`
    (n, num_points, 3), `skipped` (one line per refused file), `cache_path`.
    """

    def __init__(self, root, split: str = "train", num_points: int = 1024, *, mesh_points: int = 2048,
                 sample_seed: int = 0, transform=None, seed: int = 0, val_fraction: float = 0.1,
                 split_seed: int = SPLIT_SEED, cache_dir: str | os.PathLike | None = None, strict: bool = False,
                 workers: int | None = None, progress: bool = True):
        super().__init__(transform=transform, seed=seed)
        self.split = check_split(split)
        tree = scan_tree(root)
        self.root, self.class_names, self.num_classes = tree.root, tree.classes, len(tree.classes)
        if tree.ignored:
            shown = ", ".join(tree.ignored[:5]) + (f" and {len(tree.ignored) - 5} more" if len(tree.ignored) > 5
                                                   else "")
            tqdm.write(f"note: {self.root}: ignored {len(tree.ignored)} entr{'y' if len(tree.ignored) == 1 else 'ies'} "
                       f"outside <class>/{{train,test}}/ or of another type: {shown}", file=sys.stderr)
        folder = "test" if split == "test" else "train"
        self.preprocessing = Preprocessing(num_points=num_points, seed=sample_seed, mesh_points=mesh_points)
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(self.root)
        self.cache_path = cache / f"{folder}-{settings_key(self.preprocessing)}.npz"
        sources = tree.files[folder]
        points, problems = prepare_files(self.root, [path for path, _ in sources], self.preprocessing,
                                         self.cache_path, workers=workers, progress=progress,
                                         desc=f"{self.root.name} {folder}")
        self.skipped = [problems[i] for i in sorted(problems)]
        for line in self.skipped:
            if strict:
                raise DataError(line)
            tqdm.write(f"skipped: {line}", file=sys.stderr)
        kept = [i for i in range(len(sources)) if i not in problems]
        if self.skipped:
            tqdm.write(f"note: {self.root} {folder}: skipped {len(self.skipped)} of {len(sources)} files "
                       "(listed above)", file=sys.stderr)
        labels = np.array([sources[i][1] for i in kept], dtype=np.int64)
        empty = sorted(set(range(self.num_classes)) - set(labels.tolist()))
        if empty:
            raise DataError(f"{self.root / self.class_names[empty[0]] / folder}: none of its files could be read "
                            "(see the skipped lines above)")
        chosen = carve(labels, split, val_fraction, split_seed)
        self.files = [sources[kept[i]][0] for i in chosen]
        self.labels = labels[chosen]
        self.points = points[[kept[i] for i in chosen]] if len(chosen) else np.zeros((0, num_points, 3), np.float32)
        self._shape_items = {"label": self.labels}


def carve(labels: np.ndarray, split: str, val_fraction: float = 0.1, split_seed: int = SPLIT_SEED) -> np.ndarray:
    """Indices of `split` among the files of its folder (labels in folder order): all of them for test and
    trainval, the train or val part of the train folder otherwise."""
    if split in ("test", "trainval"):
        return np.arange(len(labels))
    return split_indices(split, stratified_val_mask(labels, val_fraction, split_seed))


# ------------------------------------------------------------------------------------------------- cache
def settings_key(settings: Preprocessing) -> str:
    text = json.dumps({"version": CACHE_VERSION, "preprocessing": settings.to_json()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def writable(folder: Path) -> bool:
    """Whether `folder` may be written: permission bits for someone and the OS agrees (a read-only mount, or
    a user without the right). Root passes os.access for any mode, hence the bits."""
    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) and os.access(folder, os.W_OK)


def default_cache_dir(root: Path) -> Path:
    if writable(root):
        return root / ".cache"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    return base / "adacrossnet" / f"{root.name}-{digest}"


def _file_key(root: Path, path: Path) -> str:
    info = path.stat()
    return f"{path.relative_to(root).as_posix()}\t{info.st_size}\t{info.st_mtime_ns}"


def prepare_files(root: Path, paths: list[Path], settings: Preprocessing, cache_path: Path, *,
                  workers: int | None = None, progress: bool = True, desc: str = "preparing"
                  ) -> tuple[np.ndarray, dict[int, str]]:
    """(points (n, num_points, 3) float32 with zeros for refused files, {index: problem line}) of `paths`,
    from the cache where its entries are current, else prepared (in `workers` processes) and cached."""
    with _locked(cache_path):
        cached = _read_cache(cache_path)
        keys = [_file_key(root, path) for path in paths]
        points = np.zeros((len(paths), settings.num_points, 3), np.float32)
        problems: dict[int, str] = {}
        todo = []
        for index, key in enumerate(keys):
            hit = cached.get(key)
            if hit is None:
                todo.append(index)
            elif isinstance(hit, str):
                problems[index] = hit
            else:
                points[index] = hit
        if todo:
            for index, result in zip(todo, _run(paths, todo, settings, workers, progress, desc)):
                if isinstance(result, str):
                    problems[index] = result
                else:
                    points[index] = result
        if todo or len(cached) != len(keys):
            _write_cache(cache_path, keys, points, problems)
    return points, problems


def _run(paths, todo, settings, workers, progress, desc):
    jobs = [(str(paths[i]), settings) for i in todo]
    workers = workers if workers is not None else min(available_cores(), 8)
    bar = tqdm(total=len(jobs), desc=desc, unit="file", disable=not progress or None,
               mininterval=1.0 if sys.stderr.isatty() else 30.0)
    try:
        if workers <= 1 or len(jobs) < 8:
            for job in jobs:
                yield read_or_problem(job)
                bar.update()
            return
        # fork where there is one (Linux): the workers run numpy only, never OpenMP, so inheriting the parent's
        # threads is safe, and unlike spawn a fork does not re-run the caller's script in every worker
        method = "fork" if "fork" in get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(workers, mp_context=get_context(method)) as pool:
            for result in pool.map(read_or_problem, jobs, chunksize=max(1, min(64, len(jobs) // (8 * workers)))):
                yield result
                bar.update()
    finally:
        bar.close()


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _read_cache(path: Path) -> dict[str, np.ndarray | str]:
    """{file key: prepared points or problem line} of a cache file; empty when there is none or it is damaged
    (it is then rebuilt)."""
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            points, keys = data["points"], data["keys"].tolist()
            bad_keys, bad_lines = data["problem_keys"].tolist(), data["problems"].tolist()
    except Exception as error:  # a damaged cache is only a cache: say so and rebuild it
        tqdm.write(f"note: {path}: unreadable cache ({oneline(error)}); preparing again", file=sys.stderr)
        return {}
    entries: dict[str, np.ndarray | str] = dict(zip(keys, points))
    entries.update(zip(bad_keys, bad_lines))
    return entries


def _write_cache(path: Path, keys: list[str], points: np.ndarray, problems: dict[int, str]) -> None:
    good = [i for i in range(len(keys)) if i not in problems]

    atomic_write(path, lambda stream: np.savez(
        stream, points=points[good], keys=np.array([keys[i] for i in good], dtype=str),
        problem_keys=np.array([keys[i] for i in sorted(problems)], dtype=str),
        problems=np.array([problems[i] for i in sorted(problems)], dtype=str)))


@contextlib.contextmanager
def _locked(cache_path: Path):
    """An exclusive lock on `<cache>.lock` for the time of a read-prepare-write (POSIX; elsewhere no lock)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    make_folder(cache_path.parent)
    with open(cache_path.with_suffix(".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
