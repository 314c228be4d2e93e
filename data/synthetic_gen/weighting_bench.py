"""A benchmark on which the weighting of the intra-modal (IM) and cross-modal (CM) losses matters.

Written in two of the real layouts: ShapeNetRender (pretraining: .ply + rendered views) and ModelNet40
(the linear-SVM evaluation: points only). Every object is a closed outer *shell* with random proportions, an
*inner core* hidden inside it, and a *coat*:

    shell  box | cylinder | ellipsoid | cone | tub        seen by both modalities (silhouette, points)
    core   ball | cross                                   points only: the renders never show it
    coat   plain | ribbed                                 loud in the renders (the coat's colour family),
                                                          quiet in the points (shallow ribs on the shell)

The evaluation label is shell x core x coat (20 classes). By design each factor reaches the point encoder by
another route: the shell through either loss, the core only through IM (images carry nothing about it, so CM has no
reason to encode it), the coat mostly through CM (colour is what the images are most about, so matching an
image pulls the point feature towards the coat; in the points alone the ribs are a small cue among the
large random proportions that IM uses to tell instances apart). Whether the losses follow the design is a
measurement: data/README.md ("Weighting benchmark") gives the study's and bench.weighting_factors' figures.
"""

from __future__ import annotations

import colorsys
import math
from pathlib import Path

import numpy as np

from .primitives import Box, Cylinder, Ellipsoid, Frustum, U, rot_y
from .render import FIELD_OF_VIEW, render_view
from .sampling import normalise_unit_sphere, sample_parts, stream
from .writers import split_files, write_h5, write_lines, write_ply, write_png

SHELLS = ("box", "cylinder", "ellipsoid", "cone", "tub")
CORES = ("ball", "cross")
COATS = ("plain", "ribbed")
CLASS_NAMES = tuple(f"{s}_{c}_{t}" for s in SHELLS for c in CORES for t in COATS)
MODELNET40_CLASSES = 40  # shape_names.txt must list 40 names; the unused ones are named unused_<k>

TAG_BENCH = 6  # random-stream tag (the five datasets use 1..5)
SPLIT_CODES = {"train": 0, "test": 2, "pretrain": 3}
POINTS_PER_OBJECT = 2048

BENCH_SIZES = {
    # tests: seconds
    "weighting_tiny": dict(pretrain_per_class=2, train_per_class=6, test_per_class=3, views=2, image_size=32,
                           ply_points=512),
    # the study: 5,000 train (4,500 + 500 validation) / 2,000 test objects, 3,200 pretraining objects
    "weighting": dict(pretrain_per_class=160, train_per_class=250, test_per_class=100, views=6, image_size=32,
                      ply_points=1024),
}

# how loud each factor is in the points (fractions of the shell's size); see the module docstring
CORE_SCALE = 0.45  # core radius / smallest shell half-extent
RIB_AMPLITUDE = 0.12  # rib depth / shell half-height
RIB_CYCLES = 2  # ribs over the shell's height
COAT_HUES = ((0.0, 0.09), (0.55, 0.68))  # plain: reds to oranges; ribbed: cyans to blues
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


def _object(rng, shell, core, coat, n):
    """Points (n,3), normals, whether each point is on the shell, in metres-ish units, turned by a random
    yaw. The ribs push shell points along their normal by a sine of the height."""
    surface, half = _shell(SHELLS[shell], rng)
    parts = [(surface, 0)] + [(prim, 1) for prim in _core(CORES[core], half, rng)]
    points, normals, part_ids, _ = sample_parts(parts, n, rng)
    on_shell = part_ids == 0
    phase = U(rng, 0, 2 * math.pi)  # drawn for every coat, so that the coat changes nothing but the ribs
    if COATS[coat] == "ribbed":
        depth = RIB_AMPLITUDE * half[1] * np.sin(math.pi * RIB_CYCLES * points[:, 1] / half[1] + phase)
        points = points + (on_shell * depth)[:, None] * normals
    turn = rot_y(U(rng, 0, 2 * math.pi))
    return points @ turn.T, normals @ turn.T, on_shell


def _jobs(per_class, rng):
    """(label, index) for every class, shuffled across classes as the real files are."""
    jobs = [(label, k) for label in range(len(CLASS_NAMES)) for k in range(per_class)]
    return [jobs[i] for i in rng.permutation(len(jobs))]


def factors(label):
    return label // (len(CORES) * len(COATS)), (label // len(COATS)) % len(CORES), label % len(COATS)


def make_modelnet40_bench(root, seed, cfg):
    """modelnet40_ply_hdf5_2048/ with the 20 shell x core x coat classes (labels 0..19, 40 names listed)."""
    folder = root / "modelnet40_ply_hdf5_2048"
    counts = {}
    for split, per_class, n_files in (("train", cfg["train_per_class"], 5), ("test", cfg["test_per_class"], 2)):
        jobs = _jobs(per_class, stream(seed, TAG_BENCH, SPLIT_CODES[split]))
        data = np.zeros((len(jobs), POINTS_PER_OBJECT, 3), np.float32)
        label = np.zeros((len(jobs), 1), np.uint8)
        for row, (c, k) in enumerate(jobs):
            rng = stream(seed, TAG_BENCH, SPLIT_CODES[split], c, k)
            points, _, _ = _object(rng, *factors(c), POINTS_PER_OBJECT)
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


def _coat_colours(coat, n, rng):
    """One hue from the coat's family, random lightness and saturation per object, a little per-point noise."""
    hue = U(rng, *COAT_HUES[coat])
    base = np.array(colorsys.hls_to_rgb(hue, U(rng, 0.35, 0.6), U(rng, 0.6, 0.95)))
    return np.clip(base + rng.normal(0, 0.02, (n, 3)), 0, 1)


def make_shapenet_render_bench(root, seed, cfg):
    """ShapeNet/<synset>/<id>.ply and ShapeNetRendering/<synset>/<id>/rendering/NN.png (+ renderings.txt,
    rendering_metadata.txt); one made-up synset folder per shell. The views show the shell only (the core is
    inside; it is left out of the render rather than trusting the z-buffer to hide every splat of it)."""
    size, views = cfg["image_size"], cfg["views"]
    jobs = _jobs(cfg["pretrain_per_class"], stream(seed, TAG_BENCH, SPLIT_CODES["pretrain"]))
    for c, k in jobs:
        rng = stream(seed, TAG_BENCH, SPLIT_CODES["pretrain"], c, k)
        shell, core, coat = factors(c)
        points, normals, on_shell = _object(rng, shell, core, coat, cfg["ply_points"] + 1500)
        lo, hi = points.min(axis=0), points.max(axis=0)
        points = (points - (lo + hi) / 2) / np.linalg.norm(hi - lo)  # ShapeNet convention: bbox diagonal 1
        synset, model_id = f"990000{shell:02d}", rng.bytes(16).hex()
        write_ply(root / "ShapeNet" / synset / f"{model_id}.ply", points[:cfg["ply_points"]].astype(np.float32),
                  binary=True)
        folder = root / "ShapeNetRendering" / synset / model_id / "rendering"
        cameras = [(U(rng, 0, 360), U(rng, 20, 35), U(rng, 0.7, 0.9)) for _ in range(views)]
        write_lines(folder / "renderings.txt", [f"{v:02d}.png" for v in range(views)])
        write_lines(folder / "rendering_metadata.txt",
                    [f"{az:.6f} {el:.6f} 0 {dist:.6f} {FIELD_OF_VIEW:g}" for az, el, dist in cameras])
        shell_points, shell_normals = points[on_shell], normals[on_shell]
        colours = _coat_colours(coat, len(shell_points), rng)
        closed = np.ones(len(shell_points), dtype=bool)
        for v, (az, el, dist) in enumerate(cameras):
            image = render_view(shell_points, shell_normals, colours, closed, az, el, dist * RENDER_DISTANCE_SCALE,
                                size=size)
            write_png(folder / f"{v:02d}.png", image)
    return {"objects": len(jobs), "views": views, "image_size": size, "synsets": len(SHELLS)}


def mismatch_renders(root, seed):
    """Give every object of ShapeNetRendering/ the rendered views of another object (a derangement drawn from
    `seed`): the negative control, in which the images say nothing about the points they are paired with."""
    base = Path(root) / "ShapeNetRendering"
    folders = sorted(p for p in base.glob("*/*") if p.is_dir())
    order = stream(seed, TAG_BENCH, 9).permutation(len(folders))
    staging = base / ".mismatching"
    staging.mkdir()
    for k, index in enumerate(order):
        folders[index].rename(staging / str(k))
    for k in range(len(order)):  # the views of object order[k] go to object order[k + 1]
        (staging / str(k)).rename(folders[order[(k + 1) % len(order)]])
    staging.rmdir()
    return len(folders)


def make_weighting_bench(root, seed, cfg):
    return {"shapenet_render": make_shapenet_render_bench(root, seed, cfg),
            "modelnet40": make_modelnet40_bench(root, seed, cfg)}
