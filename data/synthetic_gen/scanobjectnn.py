"""ScanObjectNN (OBJ_BG, OBJ_ONLY, PB_T50_RS) under its official names and CrossPoint's."""

from __future__ import annotations

import math
import shutil

import numpy as np

from .families import make_shape
from .primitives import Box, Ellipsoid, U, rot_y
from .sampling import (POINTS_PER_OBJECT, SPLIT_CODES, TAG_SCANOBJECTNN, choose_points, normalise_unit_sphere,
                       sample_parts, stream, total_area)
from .writers import write_h5

SCANOBJECTNN_NAMES = ("bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table",
                      "bed", "pillow", "sink", "sofa", "toilet")
# family that stands in for each dataset class
SCANOBJECTNN_FAMILIES = {
    "bag": "bag", "bin": "bin", "box": "box", "cabinet": "cabinet", "chair": "chair", "desk": "desk",
    "display": "monitor", "door": "door", "shelf": "shelf", "table": "table", "bed": "bed", "pillow": "pillow",
    "sink": "sink", "sofa": "sofa", "toilet": "toilet"}

SCAN_POINTS = 2000  # object points per scanned scene, before the sensor's view removes the back


def _scan_scene(family, rng):
    """An object as a depth sensor sees it, standing on a floor, maybe against a wall, with clutter around.
    Returns object points, background points (metres, y up, floor at y=0) and the object's box (lo, hi)."""
    parts = make_shape(family, rng)
    points, normals, _, _ = sample_parts(parts, SCAN_POINTS, rng)
    points[:, 1] -= points[:, 1].min()
    lo, hi = points.min(axis=0), points.max(axis=0)
    azimuth, elevation = U(rng, 0, 2 * math.pi), U(rng, 0.2, 0.8)
    towards_sensor = np.array([math.cos(elevation) * math.sin(azimuth), math.sin(elevation),
                               math.cos(elevation) * math.cos(azimuth)])
    # a single scan sees the surfaces facing the sensor (and a few stray points)
    obj = points[(normals @ towards_sensor > -0.05) | (rng.random(len(points)) < 0.05)]
    background = _scan_background(lo, hi, towards_sensor, rng)
    density = SCAN_POINTS / total_area(parts)  # the background is scanned as densely as the object
    bg, bg_normals, _, _ = sample_parts(background, int(min(total_area(background) * density, 8000)), rng)
    bg = bg[bg_normals @ towards_sensor > -0.05]
    noise = 0.004 * float((hi - lo).max())  # sensor noise
    return obj + rng.normal(0, noise, obj.shape), bg + rng.normal(0, noise, bg.shape), lo, hi


def _scan_background(lo, hi, towards_sensor, rng):
    """Floor around the object's box (wide enough for crops moved by half the object's size), maybe a
    wall behind it (away from the sensor), and a few pieces of clutter standing nearby."""
    extent = float((hi - lo).max())
    center = (lo + hi) / 2
    reach = (hi - lo) + 0.1 * extent
    background = [(Box((center[0], 0, center[2]), (2 * reach[0], 0, 2 * reach[2]), faces=("+y",)), 0)]
    if rng.random() < 0.6:
        back = -np.array([towards_sensor[0], 0, towards_sensor[2]])
        back /= np.linalg.norm(back)
        gap = U(rng, 0.02, 0.3) * extent + float(np.abs((hi - lo)[[0, 2]] / 2) @ np.abs(back[[0, 2]]))
        facing = rot_y(math.atan2(back[0], back[2]))  # turns the wall's -z side towards the object
        wall_h = (hi[1] - lo[1]) * U(rng, 1.0, 2.0)
        background.append((Box(center * [1, 0, 1] + back * gap + [0, wall_h / 2, 0], (2 * reach.max(), wall_h, 0),
                               rot=facing, faces=("-z",)), 0))
    for _ in range(int(rng.integers(1, 4))):
        size = extent * U(rng, 0.1, 0.35)
        where = center + [U(rng, -reach[0], reach[0]), 0, U(rng, -reach[2], reach[2])]
        dims = np.array([size, size * U(rng, 0.5, 1.5), size * U(rng, 0.5, 1.5)])
        lifted = where + [0, dims[1] / 2, 0]
        background.append((Box(lifted, dims) if rng.random() < 0.6 else Ellipsoid(lifted, dims / 2), 0))
    return background


def _crop(obj, bg, lo, hi, scale, shift):
    """Points of the scene inside the object's box, grown by `scale` and moved by `shift` x its size."""
    size = hi - lo
    center = (lo + hi) / 2 + shift * size
    half = size / 2 * scale
    half[1] = size[1] / 2 * max(scale, 1.0) + 1e-3
    inside = lambda p: np.all(np.abs(p - center) <= half, axis=1)
    return obj[inside(obj)], bg[inside(bg)]


def _scan_sample(obj, bg, rng, instance):
    """2048 points (unit sphere) and their mask: -1 for background, the object's instance id otherwise."""
    points = np.concatenate([obj, bg])
    mask = np.concatenate([np.full(len(obj), instance), np.full(len(bg), -1)])
    pick = choose_points(len(points), POINTS_PER_OBJECT, rng)
    return normalise_unit_sphere(points[pick]).astype(np.float32), mask[pick].astype(np.int32)


# ScanObjectNN files per split: (folder, suffix) -> written with a mask?
SCANOBJECTNN_FILES = {("main_split", ""): True, ("main_split_nobg", ""): False,
                      ("main_split", "_augmentedrot_scale75"): True,
                      ("main_split_nobg", "_augmentedrot_scale75"): False}


def make_scanobjectnn(root, seed, cfg):
    """ScanObjectNN, 15 classes, under the official names
        h5_files/main_split/{training,test}_objectdataset.h5                        OBJ_BG (data, label, mask)
        h5_files/main_split/{training,test}_objectdataset_augmentedrot_scale75.h5   PB_T50_RS (data, label, mask)
        h5_files/main_split_nobg/{training,test}_objectdataset{,_augmentedrot_scale75}.h5   OBJ_ONLY (data, label)
    and CrossPoint's ScanObjectNN/main_split/{train,test}.h5 (byte copies of OBJ_BG).
    data float32 (n,2048,3); label int32 (n,); mask int32 (n,2048), -1 = background."""
    official = root / "h5_files"
    counts = {}
    for split, file_stem, per_class in (("train", "training", cfg["sonn_train"]), ("test", "test", cfg["sonn_test"])):
        order_rng = stream(seed, TAG_SCANOBJECTNN, SPLIT_CODES[split])
        jobs = [(c, k) for c in range(len(SCANOBJECTNN_NAMES)) for k in range(per_class)]
        jobs = [jobs[i] for i in order_rng.permutation(len(jobs))]
        rows = {key: [] for key in SCANOBJECTNN_FILES}  # (points, mask, label) per file

        for c, k in jobs:
            rng = stream(seed, TAG_SCANOBJECTNN, SPLIT_CODES[split], c, k)
            obj, bg, lo, hi = _scan_scene(SCANOBJECTNN_FAMILIES[SCANOBJECTNN_NAMES[c]], rng)
            instance = int(rng.integers(0, 64))
            crops = [("", _crop(obj, bg, lo, hi, U(rng, 1.05, 1.2), np.zeros(3)))]
            for _ in range(cfg["sonn_pb_copies"]):
                # PB_T50_RS: the box moved by up to 50% of its size, then rotated about up and rescaled
                shift = np.array([U(rng, -0.5, 0.5), 0.0, U(rng, -0.5, 0.5)])
                moved = _crop(obj, bg, lo, hi, U(rng, 1.0, 1.2), shift)
                if len(moved[0]) < 50:  # hardly anything of the object left: use the centred crop
                    moved = crops[0][1]
                turn, stretch = rot_y(U(rng, 0, 2 * math.pi)), rng.uniform(0.75, 1.0, 3)
                crops.append(("_augmentedrot_scale75", tuple((p - (lo + hi) / 2) @ turn.T * stretch for p in moved)))
            for suffix, (obj_part, bg_part) in crops:
                rows[("main_split", suffix)].append((*_scan_sample(obj_part, bg_part, rng, instance), c))
                # OBJ_ONLY: the same crop without its background points
                rows[("main_split_nobg", suffix)].append((*_scan_sample(obj_part, bg_part[:0], rng, instance), c))

        for (folder, suffix), with_mask in SCANOBJECTNN_FILES.items():
            points, masks, labels = zip(*rows[(folder, suffix)])
            arrays = dict(data=np.stack(points), label=np.asarray(labels, np.int32))
            if with_mask:
                arrays["mask"] = np.stack(masks)
            write_h5(official / folder / f"{file_stem}_objectdataset{suffix}.h5", **arrays)
        crosspoint = root / "ScanObjectNN" / "main_split" / f"{split}.h5"
        crosspoint.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(official / "main_split" / f"{file_stem}_objectdataset.h5", crosspoint)
        counts[split] = len(jobs)
        counts[f"{split}_pb_t50_rs"] = len(rows[("main_split", "_augmentedrot_scale75")])
    return counts
