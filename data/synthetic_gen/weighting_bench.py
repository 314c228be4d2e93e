"""A benchmark on which the weighting of the intra-modal (IM) and cross-modal (CM) losses matters.

Written in two of the real layouts: ShapeNetRender (pretraining: .ply + rendered views) and ModelNet40
(the linear-SVM evaluation: points only). Every object is a closed outer *shell* with random proportions and
a small *core* hidden inside it:

    shell  box | cylinder | ellipsoid | cone | tub     in the points; the renders show only its bounding box
    core   ball | cross                                in the points (a few percent of them); the renders show
                                                       it as their colour family (ball: reds, cross: blues)

The evaluation label is shell x core (10 classes). The renders tell the shell kinds apart by nothing but
their proportions, and the core by nothing but colour; the points carry both.

The design alone did not separate the losses: with 256-d point features, IM only, CM only and 1:1 learned
the shell and the core alike (CM learned the shell from boxes as well as IM did). What separates them is the
study config's narrow 16-d feature, which the two losses must share (configs/weighting_study.yaml). The
measurements are in data/README.md ("Weighting benchmark").
"""

from __future__ import annotations

import colorsys
import math

import numpy as np

from .primitives import Box, Cylinder, Ellipsoid, Frustum, U, rot_y
from .render import FIELD_OF_VIEW, render_view
from .sampling import normalise_unit_sphere, sample_parts, stream
from .writers import split_files, write_h5, write_lines, write_ply, write_png

SHELLS = ("box", "cylinder", "ellipsoid", "cone", "tub")
CORES = ("ball", "cross")
CLASS_NAMES = tuple(f"{s}_{c}" for s in SHELLS for c in CORES)
MODELNET40_CLASSES = 40  # shape_names.txt must list 40 names; the unused ones are named unused_<k>

TAG_BENCH = 6  # random-stream tag (the five datasets use 1..5)
SPLIT_CODES = {"train": 0, "test": 2, "pretrain": 3}
POINTS_PER_OBJECT = 2048

BENCH_SIZES = {
    # tests: seconds
    "weighting_tiny": dict(pretrain_per_class=3, train_per_class=9, test_per_class=4, views=2, image_size=32,
                           ply_points=512),
    # the study: 5,000 train (4,500 + 500 validation) / 2,000 test objects, 3,200 pretraining objects
    "weighting": dict(pretrain_per_class=320, train_per_class=500, test_per_class=200, views=6, image_size=32,
                      ply_points=1024),
}

CORE_SCALE = 0.3  # core radius / smallest shell half-extent: a few percent of the points
CORE_HUES = ((0.0, 0.09), (0.55, 0.68))  # the renders' colour family per core: ball reds, cross blues
RENDER_DISTANCE_SCALE = 3.3


def _shell(kind, rng):
    """A closed shell centred at the origin (y up) and its half-extents (x, y, z)."""
    if kind == "box":
        size = rng.uniform(0.6, 1.4, 3)
        return Box((0, 0, 0), size), size / 2
    if kind == "cylinder":
        radius, height = U(rng, 0.3, 0.65), U(rng, 0.7, 1.5)
        return Cylinder((0, 0, 0), radius, height), np.array([radius, height / 2, radius])
    if kind == "ellipsoid":
        radii = rng.uniform(0.35, 0.75, 3)
        return Ellipsoid((0, 0, 0), radii), radii
    if kind == "cone":
        bottom, height = U(rng, 0.4, 0.75), U(rng, 0.8, 1.5)
        return Frustum((0, 0, 0), bottom, bottom * U(rng, 0.05, 0.2), height), np.array([bottom, height / 2, bottom])
    bottom, height = U(rng, 0.3, 0.5), U(rng, 0.6, 1.1)  # tub: wider at the top
    top = bottom * U(rng, 1.3, 1.7)
    return Frustum((0, 0, 0), bottom, top, height), np.array([top, height / 2, top])


def _core(kind, half, rng):
    """The hidden core, well inside the shell (the cone's narrow top is avoided by sitting low)."""
    radius = CORE_SCALE * float(half.min()) * U(rng, 0.9, 1.1)
    center = (0, -0.25 * half[1], 0)
    if kind == "ball":
        return [Ellipsoid(center, (radius, radius, radius))]
    bar = 0.3 * radius
    return [Box(center, (2 * radius, bar, bar)), Box(center, (bar, 2 * radius, bar)), Box(center, (bar, bar, 2 * radius))]


def _object(rng, shell, core, n):
    """Points (n,3) of the shell and its core, whether each is on the shell, and the shell's bounding box
    (points, normals), all turned by one random yaw."""
    surface, half = _shell(SHELLS[shell], rng)
    parts = [(surface, 0)] + [(prim, 1) for prim in _core(CORES[core], half, rng)]
    points, _, part_ids, _ = sample_parts(parts, n, rng)
    box_points, box_normals, _, _ = sample_parts([(Box((0, 0, 0), 2 * half), 0)], n, rng)
    turn = rot_y(U(rng, 0, 2 * math.pi))
    return points @ turn.T, part_ids == 0, box_points @ turn.T, box_normals @ turn.T


def _jobs(per_class, rng):
    """(label, index) for every class, shuffled across classes as the real files are."""
    jobs = [(label, k) for label in range(len(CLASS_NAMES)) for k in range(per_class)]
    return [jobs[i] for i in rng.permutation(len(jobs))]


def factors(label):
    """(shell, core) of a class label."""
    return label // len(CORES), label % len(CORES)


def make_modelnet40_bench(root, seed, cfg):
    """modelnet40_ply_hdf5_2048/ with the 10 shell x core classes (labels 0..9, 40 names listed)."""
    folder = root / "modelnet40_ply_hdf5_2048"
    counts = {}
    for split, per_class, n_files in (("train", cfg["train_per_class"], 5), ("test", cfg["test_per_class"], 2)):
        jobs = _jobs(per_class, stream(seed, TAG_BENCH, SPLIT_CODES[split]))
        data = np.zeros((len(jobs), POINTS_PER_OBJECT, 3), np.float32)
        label = np.zeros((len(jobs), 1), np.uint8)
        for row, (c, k) in enumerate(jobs):
            rng = stream(seed, TAG_BENCH, SPLIT_CODES[split], c, k)
            points = _object(rng, *factors(c), POINTS_PER_OBJECT)[0]
            points = normalise_unit_sphere(points) + rng.normal(0, 0.004, points.shape)
            data[row], label[row, 0] = normalise_unit_sphere(points), c
        listed = []
        for index, rows in enumerate(split_files(len(jobs), n_files)):
            write_h5(folder / f"ply_data_{split}{index}.h5", data=data[rows], label=label[rows])
            listed.append(f"data/modelnet40_ply_hdf5_2048/ply_data_{split}{index}.h5")
        write_lines(folder / f"{split}_files.txt", listed)
        counts[split] = len(jobs)
    names = list(CLASS_NAMES) + [f"unused_{k}" for k in range(len(CLASS_NAMES), MODELNET40_CLASSES)]
    write_lines(folder / "shape_names.txt", names)
    return {**counts, "classes_used": len(CLASS_NAMES)}


def _core_colours(core, n, rng):
    """One hue from the core's family, random lightness and saturation per object, a little per-point noise."""
    hue = U(rng, *CORE_HUES[core])
    base = np.array(colorsys.hls_to_rgb(hue, U(rng, 0.35, 0.6), U(rng, 0.6, 0.95)))
    return np.clip(base + rng.normal(0, 0.02, (n, 3)), 0, 1)


def make_shapenet_render_bench(root, seed, cfg):
    """ShapeNet/<synset>/<id>.ply and ShapeNetRendering/<synset>/<id>/rendering/NN.png (+ renderings.txt,
    rendering_metadata.txt); one made-up synset folder per shell. The views show the shell's bounding box, not the
    shell (module docstring)."""
    size, views = cfg["image_size"], cfg["views"]
    jobs = _jobs(cfg["pretrain_per_class"], stream(seed, TAG_BENCH, SPLIT_CODES["pretrain"]))
    for c, k in jobs:
        rng = stream(seed, TAG_BENCH, SPLIT_CODES["pretrain"], c, k)
        shell, core = factors(c)
        points, _, box_points, box_normals = _object(rng, shell, core, cfg["ply_points"])
        lo, hi = points.min(axis=0), points.max(axis=0)
        centre, scale = (lo + hi) / 2, np.linalg.norm(hi - lo)  # ShapeNet convention: bbox diagonal 1
        points, box_points = (points - centre) / scale, (box_points - centre) / scale
        synset, model_id = f"990000{shell:02d}", rng.bytes(16).hex()
        write_ply(root / "ShapeNet" / synset / f"{model_id}.ply", points.astype(np.float32), binary=True)
        folder = root / "ShapeNetRendering" / synset / model_id / "rendering"
        cameras = [(U(rng, 0, 360), U(rng, 20, 35), U(rng, 0.7, 0.9)) for _ in range(views)]
        write_lines(folder / "renderings.txt", [f"{v:02d}.png" for v in range(views)])
        write_lines(folder / "rendering_metadata.txt",
                    [f"{az:.6f} {el:.6f} 0 {dist:.6f} {FIELD_OF_VIEW:g}" for az, el, dist in cameras])
        colours = _core_colours(core, len(box_points), rng)
        closed = np.ones(len(box_points), dtype=bool)
        for v, (az, el, dist) in enumerate(cameras):
            image = render_view(box_points, box_normals, colours, closed, az, el, dist * RENDER_DISTANCE_SCALE,
                                size=size)
            write_png(folder / f"{v:02d}.png", image)
    return {"objects": len(jobs), "views": views, "image_size": size, "synsets": len(SHELLS)}


def make_weighting_bench(root, seed, cfg):
    return {"shapenet_render": make_shapenet_render_bench(root, seed, cfg),
            "modelnet40": make_modelnet40_bench(root, seed, cfg)}
