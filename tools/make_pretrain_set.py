"""A pretraining set from your own meshes or clouds: points and rendered views in ShapeNetRender's layout.

    python -m tools.make_pretrain_set scans/ more/*.ply mesh.off --out data/my_pretrain
    python -m tools.make_pretrain_set folder:data/ModelNet10:train --up z --out data/mn10_pretrain --png sheet.png
    python train.py --config configs/pretrain_modelnet10.yaml data.root=data/mn10_pretrain \\
        monitor.folder.root=data/ModelNet10

INPUTS are files, folders (searched recursively) and globs as tools.embed takes them, or `folder:ROOT:SPLIT`, a
split of a class-folder tree (`ROOT/<class>/{train,test}/<file>`, ModelNet's own tree; SPLIT train, val,
trainval or test as the class-folder dataset carves them, so `train` leaves out the validation shapes the
pretraining monitor selects checkpoints on). It writes, under --out, the layout train.py reads:

    ShapeNet/<group>/<id>.ply                                   --points points, unit sphere (binary PLY)
    ShapeNetRendering/<group>/<id>/rendering/00.png ..          --views RGBA views, transparent background
    ShapeNetRendering/<group>/<id>/rendering/renderings.txt     the PNG names
    ShapeNetRendering/<group>/<id>/rendering/rendering_metadata.txt   per view: azimuth elevation 0 distance fov
    pretrain_set.json                                           the settings, the inputs, what was skipped

<group> is the class for a class-folder split, the file's folder name otherwise (the class folder above a
train/ or test/ folder); <id> is the file name without its suffix (with a number added when two inputs share
it). A mesh is sampled on its surface (--points samples,
seeded per shape) for the PLY and rasterised for the views; a cloud is subsampled to at most --points points
for the PLY and drawn from all its points (up to --render-points) as splats (tools/render.py). Shapes are
centred and scaled into the unit sphere, the PLY in the file's own axes; --up names the axis the cameras
orbit around (y for ShapeNet and the ModelNet40 h5 release, z for ModelNet's OFF files and most scans).

Colours: the file's own per-vertex colours where it has them, otherwise --colour; a --colours CSV table
(`key,#rrggbb` per line, key = an input path, a file name without suffix, or a class) overrides both, e.g. to
paint each class its own colour.

Everything is deterministic (the same inputs and settings give the same bytes). An interrupted run continues
where it stopped when started again with the same settings: a shape is done once its PLY is written, which
happens last. A file that cannot be used gets one line naming it and the cause, is skipped and counted, and
the run goes on. --png writes a contact sheet (the first --sheet-shapes shapes, one row each, their views)
to look at before training. python -m bench.render measures the speed.
"""

from __future__ import annotations

import sys

if not __package__:  # run as a file: the repository root is not importable, say how to run it
    print("error: run this script from the repository root as a module: python -m tools.make_pretrain_set --help",
          file=sys.stderr)
    raise SystemExit(2)

import argparse
import csv
import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from datasets.class_folder import carve, scan_tree
from datasets.clouds import sample_surface, unexpected_problem
from datasets.formats import read_shape
from datasets.formats.ply import encode_ply_points
from datasets.formats.png import encode_png
from tools.clouds import DATASET_SPLITS, expand_inputs
from tools.render import DEFAULT_COLOUR, orbit, render_mesh, render_splats, splat_radii
from utils.errors import ConfigError, DataError, Interrupted, OutputError, exit_on_user_error
from utils.files import atomic_write, atomic_write_text, describe_os_error

STATE = "pretrain_set.json"
PARTIAL = ".partial"


@dataclass(frozen=True)
class Settings:
    views: int = 24
    size: int = 137
    points: int = 2048
    render_points: int = 100_000
    elevations: tuple = (15.0, 30.0, 45.0)
    distance: float = 4.9
    fov: float = 25.0
    up: str = "y"
    seed: int = 0
    colour: tuple = DEFAULT_COLOUR

    def cameras(self) -> list:
        return orbit(self.views, self.elevations, self.distance, self.fov, self.size)


DEFAULTS = Settings()


@dataclass(frozen=True)
class Job:
    source: str          # the input as found
    group: str           # ShapeNet/<group>/
    name: str            # <id>
    colour: tuple | None  # from the --colours table, or None


def parse_colour(text: str, where: str) -> tuple:
    value = text.strip().lstrip("#")
    if len(value) != 6 or any(ch not in "0123456789abcdefABCDEF" for ch in value):
        raise ConfigError(f"{where}: colour '{text}' is not #rrggbb")
    return tuple(int(value[i:i + 2], 16) / 255 for i in (0, 2, 4))


def read_colour_table(path: str) -> dict[str, tuple]:
    try:
        with open(path, newline="", encoding="utf-8") as file:
            rows = [row for row in csv.reader(file) if row and not row[0].startswith("#")]
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"--colours {path}: cannot read ({error})") from None
    table = {}
    for number, row in enumerate(rows, 1):
        if len(row) != 2:
            raise ConfigError(f"--colours {path}: line {number} has {len(row)} fields, expected key,#rrggbb")
        table[row[0].strip()] = parse_colour(row[1], f"--colours {path} line {number}")
    return table


def tree_split(spec: str) -> list[tuple[Path, str]]:
    """(file, class) of a `folder:ROOT:SPLIT` input, the split carved as datasets.class_folder carves it."""
    root, _, split = spec[len("folder:"):].rpartition(":")
    if not root or split not in DATASET_SPLITS:
        raise ConfigError(f"{spec}: expected folder:ROOT:SPLIT with SPLIT one of {', '.join(DATASET_SPLITS)}")
    tree = scan_tree(root)
    files = tree.files["test" if split == "test" else "train"]
    chosen = carve(np.array([label for _, label in files], dtype=np.int64), split)
    return [(files[i][0], tree.classes[files[i][1]]) for i in chosen]


def group_of(path: Path) -> str:
    """A loose file's group: its folder's name, or the class above a train/test folder (ModelNet's tree)."""
    parent = path.parent
    if parent.name.lower() in ("train", "test") and parent.parent.name:
        parent = parent.parent
    return parent.name or "shapes"


def collect_jobs(inputs: list[str], colours: dict[str, tuple]) -> list[Job]:
    found: list[tuple[Path, str]] = []
    for item in inputs:
        if item.lower().startswith("folder:"):
            found += tree_split(item)
        else:
            found += [(path, group_of(path)) for path in expand_inputs([item])]
    jobs, taken = [], set()
    for path, group in found:
        name, extra = path.stem, 2
        while (group, name) in taken:
            name, extra = f"{path.stem}_{extra}", extra + 1
        taken.add((group, name))
        colour = next((colours[key] for key in (str(path), path.stem, group) if key in colours), None)
        jobs.append(Job(str(path), group, name, colour))
    return jobs


def shape_seed(seed: int, job: Job) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{job.group}/{job.name}".encode()).digest()[:8], "little")


def to_y_up(points: np.ndarray, up: str) -> np.ndarray:
    """The cameras orbit the y axis; a z-up shape is turned (x, y, z) -> (x, z, -y), a right-handed rotation."""
    return points if up == "y" else np.stack([points[:, 0], points[:, 2], -points[:, 1]], axis=1)


def prepare_shape(job: Job, settings: Settings) -> tuple[np.ndarray, list[np.ndarray], bool]:
    """The PLY's points and the views of one input; a DataError when it cannot be used."""
    shape = read_shape(job.source)
    seed = shape_seed(settings.seed, job)
    cameras = settings.cameras()
    samples = sample_surface(shape.vertices, shape.faces, settings.points, seed) if shape.is_mesh else None
    cloud = samples if samples is not None else np.asarray(shape.vertices, dtype=np.float64)
    if len(cloud) == 0:
        raise DataError(f"{job.source}: no points")
    if not np.isfinite(cloud).all():
        raise DataError(f"{job.source}: coordinates beyond float32's range")
    centre = cloud.mean(axis=0)
    scale = float(np.linalg.norm(cloud - centre, axis=1).max())
    if not scale > 0:
        raise DataError(f"{job.source}: all {len(cloud)} points coincide")
    rng = np.random.default_rng(seed)
    colour = job.colour or settings.colour
    if samples is not None:
        # only the vertices the faces use: a stray vertex far from the surface must not move the camera's check
        used, faces = np.unique(shape.faces, return_inverse=True)
        vertices = to_y_up((shape.vertices[used] - centre) / scale, settings.up)
        own = shape.colours[used] if job.colour is None and shape.colours is not None else colour
        views = [render_mesh(vertices, faces.reshape(-1, 3), camera, own) for camera in cameras]
        return ((samples - centre) / scale).astype(np.float32), views, True
    points = (cloud - centre) / scale
    keep = np.sort(rng.choice(len(points), settings.points, replace=False)) if len(points) > settings.points \
        else np.arange(len(points))
    drawn = np.sort(rng.choice(len(points), settings.render_points, replace=False)) \
        if len(points) > settings.render_points else np.arange(len(points))
    own = shape.colours[drawn] if job.colour is None and shape.colours is not None else colour
    render = to_y_up(points[drawn], settings.up)
    radii = splat_radii(render)
    views = [render_splats(render, radii, camera, own) for camera in cameras]
    return points[keep].astype(np.float32), views, False


def write_shape(out: Path, job: Job, settings: Settings, points: np.ndarray, views: list[np.ndarray]) -> None:
    """The views into a hidden folder renamed into place, then the PLY: a shape is complete once its PLY exists."""
    folder = out / "ShapeNetRendering" / job.group / job.name
    partial = folder.parent / f".{job.name}{PARTIAL}"
    shutil.rmtree(partial, ignore_errors=True)
    rendering = partial / "rendering"
    rendering.mkdir(parents=True)
    names = [f"{v:02d}.png" for v in range(len(views))]
    for name, image in zip(names, views):
        (rendering / name).write_bytes(encode_png(image))
    (rendering / "renderings.txt").write_text("".join(f"{name}\n" for name in names))
    (rendering / "rendering_metadata.txt").write_text(
        "".join(f"{c.azimuth:.6f} {c.elevation:.6f} 0 {c.distance:.6f} {c.fov:g}\n" for c in settings.cameras()))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
    atomic_write(out / "ShapeNet" / job.group / f"{job.name}.ply", lambda file: file.write(encode_ply_points(points)))


def make_one(task: tuple[Path, Job, Settings]) -> tuple[str, str | None]:
    """Render and write one shape in a worker: ("mesh" or "cloud", None) or (job.source, the one-line problem)."""
    out, job, settings = task
    try:
        points, views, is_mesh = prepare_shape(job, settings)
    except DataError as error:
        return job.source, str(error)
    except Exception as error:  # a reader's own failure must not stop the other shapes
        return job.source, unexpected_problem(job.source, error)
    try:
        write_shape(out, job, settings, points, views)
    except OSError as error:
        raise OutputError(f"{out}: cannot write {job.group}/{job.name} ({describe_os_error(error)})") from None
    return ("mesh" if is_mesh else "cloud"), None


def settings_json(settings: Settings) -> dict:
    return {**asdict(settings), "elevations": list(settings.elevations), "colour": list(settings.colour),
            "renderer": "tools/render.py"}


def check_out(out: Path, settings: Settings, overwrite: bool) -> None:
    """Nothing for a new folder or a set of the same settings (to continue it); a folder that holds another set
    or other files is refused unless `overwrite`, which empties it first."""
    state_path = out / STATE
    state = {}
    if state_path.is_file():
        try:
            state = json.loads(state_path.read_text())
        except (OSError, ValueError) as error:
            raise DataError(f"{state_path}: cannot read ({error}); use --overwrite to start again") from None
    holds = out.is_dir() and any(out.iterdir())
    if overwrite:
        for part in ("ShapeNet", "ShapeNetRendering", STATE):
            target = out / part
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
        return
    if state and state.get("settings") != settings_json(settings):
        changed = sorted(key for key in settings_json(settings)
                         if state.get("settings", {}).get(key) != settings_json(settings)[key])
        raise ConfigError(f"{out}: holds a set made with other settings ({', '.join(changed)} differ); give "
                          "another --out, the same settings to continue it, or --overwrite")
    if holds and not state:
        raise ConfigError(f"{out}: not empty and not made by this tool (no {STATE}); give another --out or "
                          "--overwrite")


def contact_sheet(path: str, out: Path, jobs: list[Job], shapes: int) -> int:
    """Rows of views of the first `shapes` rendered shapes, on white; how many rows it has."""
    from datasets.shapenet_render import read_png_rgba

    rows = []
    for job in jobs:
        if len(rows) == shapes:
            break
        folder = out / "ShapeNetRendering" / job.group / job.name / "rendering"
        if not (out / "ShapeNet" / job.group / f"{job.name}.ply").is_file():
            continue
        names = (folder / "renderings.txt").read_text().split()
        views = [read_png_rgba(folder / name).permute(1, 2, 0).numpy().astype(np.float64) / 255 for name in names]
        row = np.concatenate([np.pad(1 - v[..., 3:] + v[..., 3:] * v[..., :3], ((1, 1), (1, 1), (0, 0)),
                                     constant_values=1) for v in views], axis=1)
        rows.append(row)
    if not rows:
        return 0
    sheet = np.concatenate(rows, axis=0)
    rgba = np.concatenate([np.rint(sheet * 255).astype(np.uint8), np.full(sheet.shape[:2] + (1,), 255, np.uint8)],
                          axis=2)
    atomic_write(path, lambda file: file.write(encode_png(rgba)))
    return len(rows)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and each option's default after its help."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.make_pretrain_set", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("inputs", nargs="+", help="files, folders, globs, or folder:ROOT:SPLIT")
    parser.add_argument("--out", required=True, help="the data root to write (train.py's data.root)")
    parser.add_argument("--views", type=int, default=DEFAULTS.views, help="views per shape (as ShapeNetRendering)")
    parser.add_argument("--size", type=int, default=DEFAULTS.size, help="view size in pixels")
    parser.add_argument("--points", type=int, default=DEFAULTS.points, help="points per PLY")
    parser.add_argument("--render-points", type=int, default=DEFAULTS.render_points,
                        help="a cloud's splats: at most this many of its points")
    parser.add_argument("--elevations", type=float, nargs="+", default=list(DEFAULTS.elevations),
                        help="degrees; the views cycle through them")
    parser.add_argument("--distance", type=float, default=DEFAULTS.distance, help="camera distance, unit-sphere radii")
    parser.add_argument("--fov", type=float, default=DEFAULTS.fov, help="field of view in degrees")
    parser.add_argument("--up", choices=("y", "z"), default=DEFAULTS.up, help="the axis the cameras orbit")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed)
    parser.add_argument("--colour", default="#" + "".join(f"{round(c * 255):02x}" for c in DEFAULTS.colour),
                        help="shapes without colours of their own (#rrggbb)")
    parser.add_argument("--colours", help="CSV of key,#rrggbb: per input path, file name or class")
    parser.add_argument("--workers", type=int, default=0, help="processes (0: one per core, at most 8)")
    parser.add_argument("--png", help="write a contact sheet of the first shapes to this PNG")
    parser.add_argument("--sheet-shapes", type=int, default=6)
    parser.add_argument("--overwrite", action="store_true", help="empty --out of a previous set first")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    for flag in ("views", "size", "points", "render_points", "sheet_shapes"):
        if getattr(args, flag) <= 0:
            raise ConfigError(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    if args.workers < 0:
        raise ConfigError(f"--workers must be 0 or more, got {args.workers}")
    if not 1.0 < args.distance < 1e6:
        raise ConfigError(f"--distance {args.distance}: the camera must be outside the unit sphere (> 1)")
    if not 0 < args.fov < 180:
        raise ConfigError(f"--fov {args.fov}: expected degrees between 0 and 180")
    if any(not -90 < e < 90 for e in args.elevations):
        raise ConfigError(f"--elevations {args.elevations}: each must be strictly between -90 and 90 degrees")
    return args


@exit_on_user_error
def main(argv=None) -> dict:
    from engine.parallel import default_workers

    args = parse_args(argv)
    settings = Settings(args.views, args.size, args.points, args.render_points, tuple(args.elevations), args.distance,
                        args.fov, args.up, args.seed, parse_colour(args.colour, "--colour"))
    jobs = collect_jobs(args.inputs, read_colour_table(args.colours) if args.colours else {})
    if not jobs:
        raise DataError(f"no input files in {' '.join(args.inputs)}")
    out = Path(args.out)
    check_out(out, settings, args.overwrite)
    todo = [job for job in jobs if not (out / "ShapeNet" / job.group / f"{job.name}.ply").is_file()]
    done_before = len(jobs) - len(todo)
    skipped: dict[str, str] = {}  # the files skipped before are tried again: they may have been mended
    base = {"settings": settings_json(settings), "command": "python -m tools.make_pretrain_set " +
            " ".join(argv if argv is not None else sys.argv[1:]), "inputs": len(jobs)}
    atomic_write_text(out / STATE, json.dumps({**base, "skipped": skipped}, indent=1) + "\n")
    workers = min(args.workers or default_workers(), max(len(todo), 1))
    counts = {"mesh": 0, "cloud": 0}
    start = time.perf_counter()
    tasks = [(out, job, settings) for job in todo]
    bar = tqdm(total=len(todo), unit="shape", desc="rendering", disable=args.no_progress or not todo)
    try:
        with ProcessPoolExecutor(workers, mp_context=get_context("fork" if sys.platform == "linux" else "spawn")) \
                if workers > 1 else _InProcess() as pool:
            for outcome, problem in pool.map(make_one, tasks, chunksize=1):
                if problem is None:
                    counts[outcome] += 1
                else:
                    skipped[outcome] = problem
                    tqdm.write(f"skipped: {problem}", file=sys.stderr)
                bar.update()
    except Interrupted as stop:
        done = done_before + counts["mesh"] + counts["cloud"]
        raise Interrupted(f"{stop}: {done} of {len(jobs)} shapes are complete in {out}; run the same command again "
                          "to make the rest", stop.exit_code - 128) from None
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    atomic_write_text(out / STATE, json.dumps({**base, "skipped": skipped}, indent=1) + "\n")
    rendered = counts["mesh"] + counts["cloud"]
    if not rendered and not done_before:
        raise DataError(f"no shape could be made: all {len(skipped)} inputs were skipped (listed above and in "
                        f"{out / STATE})")
    print(f"rendered {rendered} shapes ({counts['mesh']} meshes, {counts['cloud']} clouds) in {seconds:.1f} s "
          f"({rendered / max(seconds, 1e-9):.1f} shapes/s, {workers} process{'es' if workers > 1 else ''})"
          + (f"; {done_before} done before" if done_before else "")
          + (f"; skipped {len(skipped)} (listed above and in {out / STATE})" if skipped else ""))
    if args.png:
        rows = contact_sheet(args.png, out, jobs, args.sheet_shapes)
        print(f"contact sheet: {args.png} ({rows} shapes x {settings.views} views)")
    print(f"pretraining set: {out} (train.py data.root={out})")
    return {"rendered": rendered, **counts, "skipped": len(skipped), "done_before": done_before,
            "seconds": seconds}


class _InProcess:
    """The executor interface for one process: no pool to start for a single worker or shape."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, function, items, chunksize=1):
        return map(function, items)


if __name__ == "__main__":
    main()
