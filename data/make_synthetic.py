"""Generate small synthetic copies of the five AdaCrossNet datasets, in their real on-disk layouts.

    python data/make_synthetic.py --out data/synthetic --seed 0 --size small

Everything written here has the file names, h5 keys, shapes and dtypes of the public archives (see
data/README.md), so the loaders are tested against the real layout without downloading anything:

    ShapeNet/<synset>/<model_id>.ply                 ShapeNetRender point clouds (13 synsets)
    ShapeNetRendering/<synset>/<model_id>/rendering/  24 RGBA views + renderings.txt, rendering_metadata.txt
    modelnet40_ply_hdf5_2048/                        ModelNet40
    h5_files/main_split{,_nobg}/ and ScanObjectNN/main_split/   ScanObjectNN (official and CrossPoint names)
    shapenet_part_seg_hdf5_data/                     ShapeNetPart
    indoor3d_sem_seg_hdf5_data/                      S3DIS

The shapes are procedural: a family (table, chair, airplane, ...) is a list of surface primitives (boxes,
frusta, ellipsoids, tori) with random proportions, each primitive tagged with a part. Point clouds are
area-weighted surface samples, so classes differ by shape, not by point count, and part labels are
geometric. The renders of a ShapeNetRender object are drawn from the same posed shape as its .ply.

Self-contained on purpose (numpy, h5py, plyfile and the standard library) so that it runs before anything
else works.
Deterministic: the same (seed, size) gives identical h5 arrays (and files) and identical PNG bytes.
"""

from __future__ import annotations

import argparse
import copy
import math
import shutil
import struct
import sys
import time
import zlib
from pathlib import Path

import h5py
import numpy as np
from plyfile import PlyData, PlyElement

# --------------------------------------------------------------------------------------------------------
# Names and ids of the real datasets
# --------------------------------------------------------------------------------------------------------

MODELNET40_NAMES = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone", "cup",
    "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard", "lamp", "laptop",
    "mantel", "monitor", "night_stand", "person", "piano", "plant", "radio", "range_hood", "sink", "sofa",
    "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase", "wardrobe", "xbox")

SCANOBJECTNN_NAMES = ("bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table",
                      "bed", "pillow", "sink", "sofa", "toilet")

# (name as in all_object_categories.txt, ShapeNet synset, number of parts); label = position in this list
SHAPENET_PART_CATEGORIES = (
    ("Airplane", "02691156", 4), ("Bag", "02773838", 2), ("Cap", "02954340", 2), ("Car", "02958343", 4),
    ("Chair", "03001627", 4), ("Earphone", "03261776", 3), ("Guitar", "03467517", 3),
    ("Knife", "03624134", 2), ("Lamp", "03636649", 4), ("Laptop", "03642806", 2),
    ("Motorbike", "03790512", 6), ("Mug", "03797390", 2), ("Pistol", "03948459", 3),
    ("Rocket", "04099429", 3), ("Skateboard", "04225987", 3), ("Table", "04379243", 3))
# global part ids are contiguous: category c owns [PART_OFFSETS[c], PART_OFFSETS[c] + parts)
PART_OFFSETS = tuple(int(x) for x in np.cumsum([0] + [c[2] for c in SHAPENET_PART_CATEGORIES])[:-1])

S3DIS_CLASSES = ("ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa",
                 "bookcase", "board", "clutter")

# family that stands in for each dataset class
MODELNET40_FAMILIES = {
    "airplane": "airplane", "bed": "bed", "bench": "bench", "bookshelf": "shelf", "bottle": "bottle",
    "bowl": "bowl", "car": "car", "chair": "chair", "cone": "cone", "cup": "mug", "desk": "desk",
    "door": "door", "dresser": "cabinet", "glass_box": "box", "guitar": "guitar", "lamp": "lamp",
    "laptop": "laptop", "monitor": "monitor", "sink": "sink", "sofa": "sofa", "table": "table",
    "toilet": "toilet"}
SCANOBJECTNN_FAMILIES = {
    "bag": "bag", "bin": "bin", "box": "box", "cabinet": "cabinet", "chair": "chair", "desk": "desk",
    "display": "monitor", "door": "door", "shelf": "shelf", "table": "table", "bed": "bed", "pillow": "pillow",
    "sink": "sink", "sofa": "sofa", "toilet": "toilet"}
# the 13 ShapeNetRender (3D-R2N2) synsets
SHAPENET_RENDER_FAMILIES = {
    "02691156": "airplane", "02828884": "bench", "02933112": "cabinet", "02958343": "car",
    "03001627": "chair", "03211117": "monitor", "03636649": "lamp", "03691459": "loudspeaker",
    "04090263": "rifle", "04256520": "sofa", "04379243": "table", "04401088": "telephone",
    "04530566": "watercraft"}
SHAPENET_PART_FAMILIES = {name: name.lower() for name, _, _ in SHAPENET_PART_CATEGORIES}

SIZES = {
    # tests: the whole generation stays around a couple of seconds on one core
    "tiny": dict(modelnet_train=10, modelnet_test=5, render_per_synset=2, render_missing=2,
                 sonn_train=6, sonn_test=3, sonn_pb_copies=2, part_train=4, part_val=1, part_test=2,
                 rooms_per_area=1, room_extent=(2.4, 3.2), room_density=900.0, blocks_per_file=20,
                 render_density=2500.0),
    # CPU demo
    "small": dict(modelnet_train=40, modelnet_test=20, render_per_synset=16, render_missing=2,
                  sonn_train=20, sonn_test=8, sonn_pb_copies=3, part_train=24, part_val=4, part_test=8,
                  rooms_per_area=2, room_extent=(3.0, 5.5), room_density=1200.0, blocks_per_file=100,
                  render_density=4000.0),
}

# one tag per dataset, mixed into every random stream so that datasets never share draws
TAG_MODELNET, TAG_SCANOBJECTNN, TAG_PART, TAG_S3DIS, TAG_RENDER = 1, 2, 3, 4, 5
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

POINTS_PER_OBJECT = 2048
S3DIS_POINTS_PER_BLOCK = 4096
VIEWS = 24
IMAGE_SIZE = 137
FIELD_OF_VIEW = 25.0  # degrees, the value in the real rendering_metadata.txt
RENDER_DISTANCE_SCALE = 3.3  # camera distance = distance ratio x this, in .ply units (bbox diagonal 1)

# --------------------------------------------------------------------------------------------------------
# Surface primitives: each samples points uniformly by area (in its own frame, then posed)
# --------------------------------------------------------------------------------------------------------


def rot_x(angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=float)


def rot_y(angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=float)


def rot_z(angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=float)


ALONG_X = rot_z(-math.pi / 2)  # turns a primitive's own y axis into x
ALONG_Z = rot_x(math.pi / 2)  # ... into z


def pick_by_weight(weights, rng, n):
    """n indices drawn with probability proportional to `weights` (a faster rng.choice(p=...))."""
    cumulative = np.cumsum(weights)
    return np.minimum(np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right"), len(weights) - 1)


def _unit(v):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


class Primitive:
    """A surface in its own frame, placed by a rotation and a centre."""

    def __init__(self, center, rot=None):
        self.center = np.asarray(center, dtype=float)
        self.rot = np.eye(3) if rot is None else np.asarray(rot, dtype=float)

    def area(self) -> float:
        raise NotImplementedError

    def _sample_local(self, rng, n):
        raise NotImplementedError

    def sample(self, rng, n):
        points, normals = self._sample_local(rng, n)
        return points @ self.rot.T + self.center, normals @ self.rot.T

    def closed(self) -> bool:
        """Whether the surface encloses a volume (then its back-facing points are never visible)."""
        return False

    def moved(self, rot, offset):
        """The same primitive after `x -> rot @ x + offset` (used to place furniture in a room)."""
        other = copy.copy(self)
        other.rot = rot @ self.rot
        other.center = rot @ self.center + np.asarray(offset, dtype=float)
        return other


class Box(Primitive):
    """Surface of an axis-aligned box (in its frame); `faces` leaves out sides, e.g. an open top."""

    FACES = ("+x", "-x", "+y", "-y", "+z", "-z")

    def __init__(self, center, size, rot=None, faces=FACES):
        super().__init__(center, rot)
        self.size = np.asarray(size, dtype=float)
        self.faces = tuple(faces)

    def closed(self):
        return len(set(self.faces)) == 6

    def _face_areas(self):
        sx, sy, sz = self.size
        per_axis = {"x": sy * sz, "y": sx * sz, "z": sx * sy}
        return np.array([per_axis[face[1]] for face in self.faces])

    def area(self):
        return float(self._face_areas().sum())

    def _sample_local(self, rng, n):
        which = pick_by_weight(self._face_areas(), rng, n)
        axis = np.array(["xyz".index(face[1]) for face in self.faces])[which]
        sign = np.array([1.0 if face[0] == "+" else -1.0 for face in self.faces])[which]
        rows = np.arange(n)
        points = (rng.random((n, 3)) - 0.5) * self.size
        points[rows, axis] = sign * self.size[axis] / 2
        normals = np.zeros((n, 3))
        normals[rows, axis] = sign
        return points, normals


class Frustum(Primitive):
    """Truncated cone around the frame's y axis: radius r_bottom at y=-h/2, r_top at y=+h/2.
    A cylinder has equal radii, a cone r_top=0; either cap can be left open."""

    def __init__(self, center, r_bottom, r_top, height, rot=None, bottom=True, top=True):
        super().__init__(center, rot)
        self.rb, self.rt, self.h = float(r_bottom), float(r_top), float(height)
        self.bottom, self.top = bottom, top

    def closed(self):
        return (self.bottom or self.rb == 0) and (self.top or self.rt == 0)

    def _areas(self):
        side = math.pi * (self.rb + self.rt) * math.hypot(self.h, self.rb - self.rt)
        return np.array([side, math.pi * self.rb ** 2 * self.bottom, math.pi * self.rt ** 2 * self.top])

    def area(self):
        return float(self._areas().sum())

    def _sample_local(self, rng, n):
        which = pick_by_weight(self._areas(), rng, n)
        u, theta = rng.random(n), rng.uniform(0, 2 * math.pi, n)
        cos, sin = np.cos(theta), np.sin(theta)
        points, normals = np.zeros((n, 3)), np.zeros((n, 3))
        # side: the radius grows linearly with height, so draw it from the matching (quadratic) density
        if abs(self.rt - self.rb) < 1e-9:
            t, radius = u, np.full(n, self.rb)
        else:
            radius = np.sqrt(self.rb ** 2 + u * (self.rt ** 2 - self.rb ** 2))
            t = (radius - self.rb) / (self.rt - self.rb)
        on_side, on_bottom, on_top = (which == k for k in range(3))
        points[on_side] = np.stack([radius * cos, -self.h / 2 + t * self.h, radius * sin], axis=1)[on_side]
        side_normal = np.stack([self.h * cos, np.full(n, self.rb - self.rt), self.h * sin], axis=1)
        normals[on_side] = _unit(side_normal[on_side])
        for on_cap, y, r, ny in ((on_bottom, -self.h / 2, self.rb, -1.0), (on_top, self.h / 2, self.rt, 1.0)):
            rr = r * np.sqrt(u[on_cap])  # sqrt keeps the density uniform over the disc
            points[on_cap] = np.stack([rr * cos[on_cap], np.full(rr.shape, y), rr * sin[on_cap]], axis=1)
            normals[on_cap, 1] = ny
        return points, normals


def Cylinder(center, radius, height, rot=None, bottom=True, top=True):
    return Frustum(center, radius, radius, height, rot, bottom, top)


class Ellipsoid(Primitive):
    """Ellipsoid surface; `y_range` keeps the band y/ry in [lo, hi] (e.g. (-1, 0): an open bowl)."""

    def __init__(self, center, radii, rot=None, y_range=(-1.0, 1.0)):
        super().__init__(center, rot)
        self.radii = np.asarray(radii, dtype=float)
        self.y_range = y_range

    def closed(self):
        return tuple(self.y_range) == (-1.0, 1.0)

    def area(self):
        a, b, c = self.radii ** 1.6  # Knud Thomsen's approximation of the full surface
        full = 4 * math.pi * ((a * b + a * c + b * c) / 3) ** (1 / 1.6)
        return full * (self.y_range[1] - self.y_range[0]) / 2

    def _sample_local(self, rng, n):
        # Archimedes: on a sphere, uniform height gives uniform area
        y = rng.uniform(*self.y_range, n)
        theta = rng.uniform(0, 2 * math.pi, n)
        ring = np.sqrt(np.clip(1 - y ** 2, 0, None))
        unit = np.stack([ring * np.cos(theta), y, ring * np.sin(theta)], axis=1)
        return unit * self.radii, _unit(unit / self.radii)


class Torus(Primitive):
    """Tube of radius r around a circle of radius R in the frame's x-y plane, over angles `arc`."""

    def __init__(self, center, R, r, rot=None, arc=(0.0, 2 * math.pi)):
        super().__init__(center, rot)
        self.R, self.r, self.arc = float(R), float(r), arc

    def closed(self):
        return self.arc[1] - self.arc[0] >= 2 * math.pi - 1e-9

    def area(self):
        return (self.arc[1] - self.arc[0]) * self.R * 2 * math.pi * self.r

    def _sample_local(self, rng, n):
        theta = rng.uniform(*self.arc, n)
        phi = rng.uniform(0, 2 * math.pi, n)
        ring = np.stack([np.cos(theta), np.sin(theta), np.zeros(n)], axis=1)
        normals = np.cos(phi)[:, None] * ring + np.sin(phi)[:, None] * np.array([0.0, 0.0, 1.0])
        return self.R * ring + self.r * normals, normals


def sample_parts(parts, n, rng, min_per_primitive=4):
    """Sample `n` surface points from a list of (primitive, part id), by area; every primitive gets at
    least a few points so small parts (a trigger, a bulb) are never missing.
    Returns points (n,3), normals (n,3), part ids (n,), primitive index (n,), in random order."""
    areas = np.array([prim.area() for prim, _ in parts])
    floor = min(min_per_primitive, n // (2 * len(parts)))
    counts = floor + rng.multinomial(n - floor * len(parts), areas / areas.sum())
    points, normals, part_ids, which = [], [], [], []
    for k, ((prim, part), count) in enumerate(zip(parts, counts)):
        p, nrm = prim.sample(rng, int(count))
        points.append(p)
        normals.append(nrm)
        part_ids.append(np.full(int(count), part))
        which.append(np.full(int(count), k))
    # random order, as in the real files: "the first 1024 points" must be a sample of the whole shape
    order = rng.permutation(n)
    return (np.concatenate(points)[order], np.concatenate(normals)[order], np.concatenate(part_ids)[order],
            np.concatenate(which)[order])


def total_area(parts):
    return float(sum(prim.area() for prim, _ in parts))


def normalise_unit_sphere(points):
    """Centroid at the origin, farthest point at distance 1 (the ModelNet40 / ShapeNetPart convention)."""
    centred = points - points.mean(axis=0)
    return centred / np.linalg.norm(centred, axis=1).max()


def choose_points(count, n, rng):
    """Indices of n of `count` points: without replacement when there are enough, else all plus repeats."""
    if count >= n:
        return rng.choice(count, n, replace=False)
    return rng.permutation(np.concatenate([np.arange(count), rng.choice(count, n - count)]))

# --------------------------------------------------------------------------------------------------------
# Shape families. Each builder returns [(primitive, part), ...] in metres-ish units, y up, for one random
# instance; part ids follow FAMILY_PARTS (for ShapeNetPart families, the order of that category's parts).
# Proportions are drawn from overlapping ranges so that the bounding box alone does not give the class away.
# --------------------------------------------------------------------------------------------------------

FAMILY_PARTS = {
    "airplane": ("body", "wing", "tail", "engine"), "bag": ("handle", "body"), "cap": ("peak", "crown"),
    "car": ("roof", "hood", "wheel", "body"), "chair": ("back", "seat", "leg", "arm"),
    "earphone": ("earcup", "headband", "cord"), "guitar": ("head", "neck", "body"),
    "knife": ("blade", "handle"), "lamp": ("base", "pole", "shade", "bulb"), "laptop": ("keyboard", "screen"),
    "motorbike": ("gas_tank", "seat", "wheel", "handlebar", "light", "frame"), "mug": ("handle", "body"),
    "pistol": ("barrel", "grip", "trigger"), "rocket": ("body", "fin", "nose"),
    "skateboard": ("wheel", "deck", "truck"), "table": ("top", "leg", "support"),
    "bed": ("frame", "mattress", "headboard"), "bench": ("seat", "leg", "back"),
    "bin": ("body", "lid"), "bottle": ("body", "neck"), "bowl": ("bowl", "foot"), "box": ("box", "flap"),
    "cabinet": ("body", "door", "handle"), "cone": ("cone", "base"), "desk": ("top", "pedestal", "leg"),
    "door": ("slab", "knob", "frame"), "loudspeaker": ("cabinet", "driver"),
    "monitor": ("screen", "stand", "base"), "pillow": ("pillow",), "rifle": ("barrel", "body", "stock"),
    "shelf": ("frame", "board", "book"), "sink": ("basin", "support", "faucet"),
    "sofa": ("base", "back", "arm"), "telephone": ("body", "screen", "detail"),
    "toilet": ("bowl", "tank", "seat"), "watercraft": ("hull", "deck", "superstructure"),
}

# base colour per part (RGB 0..1) for the renders
FAMILY_COLOURS = {
    "airplane": [(.85, .86, .88), (.7, .72, .76), (.8, .25, .2), (.35, .35, .4)],
    "bench": [(.55, .38, .22), (.25, .25, .27), (.55, .38, .22)],
    "cabinet": [(.62, .45, .3), (.7, .52, .35), (.8, .8, .75)],
    "car": [(.2, .3, .6), (.7, .15, .15), (.1, .1, .1), (.75, .2, .2)],
    "chair": [(.55, .3, .2), (.6, .35, .22), (.2, .2, .2), (.45, .3, .2)],
    "monitor": [(.1, .1, .12), (.3, .3, .32), (.25, .25, .27)],
    "lamp": [(.3, .3, .3), (.6, .6, .62), (.95, .85, .6), (1.0, 1.0, .85)],
    "loudspeaker": [(.15, .12, .1), (.4, .4, .42)],
    "rifle": [(.2, .2, .22), (.3, .3, .3), (.45, .3, .18)],
    "sofa": [(.6, .2, .2), (.55, .18, .18), (.5, .16, .16)],
    "table": [(.6, .42, .25), (.35, .25, .15), (.45, .32, .2)],
    "telephone": [(.15, .15, .17), (.2, .3, .45), (.6, .6, .6)],
    "watercraft": [(.9, .9, .92), (.6, .45, .3), (.3, .4, .6)],
}
DEFAULT_COLOURS = [(.6, .6, .6), (.4, .4, .45), (.75, .6, .45), (.3, .5, .6), (.6, .3, .3), (.5, .6, .3)]


def U(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def _four(half_x, half_z):
    return [(sx * half_x, sz * half_z) for sx in (-1, 1) for sz in (-1, 1)]


def build_table(rng):
    height, thick = U(rng, 0.6, 1.0), U(rng, 0.03, 0.08)
    top_y = height - thick / 2
    if rng.random() < 0.3:  # round pedestal table: central pole, disc foot
        radius = U(rng, 0.4, 0.8)
        return [(Cylinder((0, top_y, 0), radius, thick), 0),
                (Cylinder((0, (height - thick) / 2, 0), U(rng, 0.04, 0.1), height - thick, bottom=False, top=False), 1),
                (Cylinder((0, 0.02, 0), radius * U(rng, 0.4, 0.7), 0.04), 2)]
    width, depth, leg, inset = U(rng, 0.9, 2.0), U(rng, 0.6, 1.2), U(rng, 0.04, 0.1), U(rng, 0.0, 0.12)
    leg_h, apron_h = height - thick, U(rng, 0.06, 0.15)
    ax, az = width / 2 - inset - leg / 2, depth / 2 - inset - leg / 2
    parts = [(Box((0, top_y, 0), (width, thick, depth)), 0)]
    parts += [(Box((x, leg_h / 2, z), (leg, leg_h, leg)), 1) for x, z in _four(ax, az)]
    apron_y = height - thick - apron_h / 2
    parts += [(Box((0, apron_y, s * az), (2 * ax, apron_h, 0.02)), 2) for s in (-1, 1)]
    parts += [(Box((s * ax, apron_y, 0), (0.02, apron_h, 2 * az)), 2) for s in (-1, 1)]
    return parts


def build_chair(rng):
    w, d, seat_h, seat_t = U(rng, 0.4, 0.6), U(rng, 0.4, 0.6), U(rng, 0.4, 0.5), U(rng, 0.04, 0.08)
    back_h, back_t, leg = U(rng, 0.35, 0.7), U(rng, 0.03, 0.08), U(rng, 0.03, 0.06)
    under = seat_h - seat_t / 2
    parts = [(Box((0, seat_h, 0), (w, seat_t, d)), 1),
             (Box((0, seat_h + seat_t / 2 + back_h / 2, -d / 2 + back_t / 2), (w, back_h, back_t),
                  rot=rot_x(U(rng, -0.25, 0.0))), 0)]
    if rng.random() < 0.25:  # office chair: column and a five-spoke star
        parts.append((Cylinder((0, under / 2 + 0.04, 0), 0.03, under - 0.08, bottom=False, top=False), 2))
        for k in range(5):
            spoke = rot_y(2 * math.pi * k / 5)
            parts.append((Box(spoke @ np.array([0.15, 0.04, 0]), (0.3, 0.03, 0.04), rot=spoke), 2))
    else:
        parts += [(Box((x, under / 2, z), (leg, under, leg)), 2) for x, z in _four(w / 2 - leg / 2, d / 2 - leg / 2)]
    if rng.random() < 0.4:  # armrests on posts
        arm_y = seat_h + U(rng, 0.18, 0.25)
        for s in (-1, 1):
            parts.append((Box((s * (w / 2 + 0.02), arm_y, 0), (0.05, 0.04, d * 0.9)), 3))
            parts.append((Box((s * (w / 2 + 0.02), (arm_y + seat_h) / 2, d * 0.35), (0.03, arm_y - seat_h, 0.03)), 3))
    return parts


def build_sofa(rng):
    length, depth, base_h = U(rng, 1.4, 2.4), U(rng, 0.75, 1.0), U(rng, 0.35, 0.5)
    back_h, back_t, arm_w, arm_h = U(rng, 0.3, 0.5), U(rng, 0.15, 0.3), U(rng, 0.1, 0.25), U(rng, 0.15, 0.3)
    parts = [(Box((0, base_h / 2, 0), (length, base_h, depth)), 0),
             (Box((0, base_h + back_h / 2, -depth / 2 + back_t / 2), (length, back_h, back_t)), 1)]
    parts += [(Box((s * (length / 2 - arm_w / 2), base_h + arm_h / 2, back_t / 2), (arm_w, arm_h, depth - back_t)), 2)
              for s in (-1, 1)]
    seats = int(rng.integers(2, 4))  # seat cushions
    inner = length - 2 * arm_w
    parts += [(Box((-inner / 2 + (k + 0.5) * inner / seats, base_h + 0.05, back_t / 2),
                   (inner / seats * 0.96, 0.1, depth - back_t)), 0) for k in range(seats)]
    return parts


def build_bed(rng):
    length, width, frame_h, mat_h = U(rng, 1.9, 2.2), U(rng, 0.9, 1.8), U(rng, 0.2, 0.35), U(rng, 0.15, 0.3)
    head_h, lift = U(rng, 0.7, 1.3), 0.08
    parts = [(Box((0, lift + frame_h / 2, 0), (width, frame_h, length)), 0),
             (Box((0, lift + frame_h + mat_h / 2, 0), (width * 0.97, mat_h, length * 0.97)), 1),
             (Box((0, head_h / 2, -length / 2 - 0.03), (width, head_h, 0.06)), 2)]
    parts += [(Box((x, lift / 2, z), (0.06, lift, 0.06)), 0) for x, z in _four(width / 2 - 0.05, length / 2 - 0.05)]
    if rng.random() < 0.5:
        foot_h = U(rng, 0.3, 0.6)
        parts.append((Box((0, foot_h / 2, length / 2 + 0.03), (width, foot_h, 0.05)), 0))
    if rng.random() < 0.7:
        top = lift + frame_h + mat_h
        parts.append((Ellipsoid((0, top + 0.05, -length / 2 + 0.3), (width * 0.35, 0.07, 0.2)), 1))
    return parts


def build_bench(rng):
    length, depth, height, thick = U(rng, 1.0, 2.0), U(rng, 0.3, 0.5), U(rng, 0.4, 0.5), U(rng, 0.04, 0.08)
    parts = [(Box((0, height, 0), (length, thick, depth)), 0)]
    under = height - thick / 2
    if rng.random() < 0.5:  # slab ends
        parts += [(Box((s * (length / 2 - 0.1), under / 2, 0), (0.05, under, depth * 0.9)), 1) for s in (-1, 1)]
    else:
        parts += [(Box((x, under / 2, z), (0.05, under, 0.05)), 1)
                  for x, z in _four(length / 2 - 0.08, depth / 2 - 0.05)]
    if rng.random() < 0.5:  # backrest on posts
        back_h = U(rng, 0.25, 0.45)
        parts.append((Box((0, height + 0.1 + back_h / 2, -depth / 2), (length, back_h, 0.04)), 2))
        parts += [(Box((s * (length / 2 - 0.1), height + 0.05, -depth / 2), (0.04, 0.1, 0.04)), 2) for s in (-1, 1)]
    return parts


def build_desk(rng):
    width, depth, height, thick = U(rng, 1.0, 1.6), U(rng, 0.5, 0.8), U(rng, 0.7, 0.8), 0.04
    ped_w = U(rng, 0.35, 0.5)
    under = height - thick
    parts = [(Box((0, height - thick / 2, 0), (width, thick, depth)), 0),
             (Box((width / 2 - ped_w / 2, under / 2, 0), (ped_w, under, depth * 0.95)), 1)]
    drawers = int(rng.integers(2, 5))
    parts += [(Box((width / 2 - ped_w / 2, under * (k + 0.5) / drawers, depth * 0.475 + 0.01), (0.12, 0.02, 0.02)), 1)
              for k in range(drawers)]  # drawer handles
    if rng.random() < 0.5:
        parts.append((Box((-width / 2 + 0.03, under / 2, 0), (0.04, under, depth * 0.95)), 2))
    else:
        parts += [(Box((-width / 2 + 0.04, under / 2, s * (depth / 2 - 0.04)), (0.05, under, 0.05)), 2)
                  for s in (-1, 1)]
    if rng.random() < 0.5:  # modesty panel at the back
        parts.append((Box((0, under * 0.6, -depth / 2 + 0.02), (width - ped_w, under * 0.5, 0.02)), 2))
    return parts


def build_cabinet(rng):
    width, height, depth = U(rng, 0.5, 1.2), U(rng, 0.7, 2.0), U(rng, 0.35, 0.6)
    plinth = U(rng, 0.0, 0.1)
    parts = [(Box((0, plinth + (height - plinth) / 2, 0), (width, height - plinth, depth)), 0)]
    if plinth > 0.03:
        parts.append((Box((0, plinth / 2, -0.03), (width - 0.06, plinth, depth - 0.06)), 0))
    doors = int(rng.integers(1, 3))
    door_w, door_h = width / doors - 0.02, height - plinth - 0.06
    for k in range(doors):
        x = -width / 2 + (k + 0.5) * width / doors
        parts.append((Box((x, plinth + (height - plinth) / 2, depth / 2 + 0.01), (door_w, door_h, 0.02)), 1))
        hx = x + (door_w / 2 - 0.06) * (1 if k % 2 == 0 else -1)
        parts.append((Box((hx, plinth + (height - plinth) * 0.55, depth / 2 + 0.035), (0.02, 0.12, 0.03)), 2))
    return parts


def build_shelf(rng):
    width, height, depth, thick = U(rng, 0.6, 1.2), U(rng, 0.8, 2.0), U(rng, 0.25, 0.4), U(rng, 0.02, 0.04)
    boards = int(rng.integers(2, 6))
    parts = [(Box((s * (width / 2 - thick / 2), height / 2, 0), (thick, height, depth)), 0) for s in (-1, 1)]
    parts += [(Box((0, y, 0), (width, thick, depth)), 0) for y in (thick / 2, height - thick / 2)]
    parts.append((Box((0, height / 2, -depth / 2 + 0.005), (width, height, 0.01)), 0))
    inner = width - 2 * thick
    for k in range(1, boards):
        y = k * height / boards
        parts.append((Box((0, y, 0), (inner, thick, depth)), 1))
        if rng.random() < 0.6:  # a row of books on the board below
            book_h = min(U(rng, 0.15, 0.3), height / boards - 0.05)
            book_w = U(rng, 0.2, 0.6) * inner
            x = U(rng, -inner / 2 + book_w / 2, inner / 2 - book_w / 2)
            parts.append((Box((x, y - height / boards + thick / 2 + book_h / 2, 0), (book_w, book_h, depth * 0.8)), 2))
    return parts


def build_door(rng):
    width, height, thick = U(rng, 0.7, 1.0), U(rng, 1.9, 2.2), U(rng, 0.03, 0.06)
    parts = [(Box((0, height / 2, 0), (width, height, thick)), 0)]
    knob_x, knob_y = width / 2 - 0.08, U(rng, 0.9, 1.05)
    parts += [(Ellipsoid((knob_x, knob_y, s * (thick / 2 + 0.03)), (0.03, 0.03, 0.03)), 1) for s in (-1, 1)]
    if rng.random() < 0.6:  # frame around the slab
        f = 0.06
        parts += [(Box((s * (width / 2 + f / 2), (height + f) / 2, 0), (f, height + f, thick * 2)), 2) for s in (-1, 1)]
        parts.append((Box((0, height + f / 2, 0), (width + 2 * f, f, thick * 2)), 2))
    return parts


def build_monitor(rng):
    width = U(rng, 0.45, 0.8)
    screen_h, thick, neck_h, base_t = width * U(rng, 0.5, 0.75), U(rng, 0.02, 0.06), U(rng, 0.05, 0.2), 0.02
    parts = [(Box((0, base_t + neck_h + screen_h / 2, 0), (width, screen_h, thick)), 0),
             (Box((0, base_t + neck_h / 2 + 0.02, -thick), (U(rng, 0.04, 0.08), neck_h + 0.04, 0.03)), 1)]
    if rng.random() < 0.5:
        parts.append((Box((0, base_t / 2, -thick), (U(rng, 0.15, 0.3), base_t, U(rng, 0.12, 0.2))), 2))
    else:
        parts.append((Cylinder((0, base_t / 2, -thick), U(rng, 0.08, 0.14), base_t), 2))
    if rng.random() < 0.3:  # a bulky back, like an old CRT
        back_center = (0, base_t + neck_h + screen_h / 2, -thick / 2 - 0.1)
        parts.append((Box(back_center, (width * 0.7, screen_h * 0.7, 0.2)), 0))
    return parts


def build_toilet(rng):
    bowl_rx, bowl_ry, bowl_rz, bowl_y = U(rng, 0.17, 0.22), U(rng, 0.15, 0.22), U(rng, 0.22, 0.3), U(rng, 0.38, 0.45)
    tank_w, tank_h, tank_d = U(rng, 0.35, 0.5), U(rng, 0.3, 0.45), U(rng, 0.15, 0.22)
    return [(Ellipsoid((0, bowl_y, 0.05), (bowl_rx, bowl_ry, bowl_rz), y_range=(-1.0, 0.0)), 0),
            (Frustum((0, (bowl_y - bowl_ry * 0.5) / 2, 0.0), bowl_rx * 0.7, bowl_rx * 0.5, bowl_y - bowl_ry * 0.5), 0),
            (Torus((0, bowl_y + 0.02, 0.05), bowl_rx, 0.03, rot=rot_x(math.pi / 2)), 2),
            (Box((0, bowl_y + tank_h / 2, -bowl_rz - tank_d / 2 + 0.05), (tank_w, tank_h, tank_d)), 1)]


def build_sink(rng):
    radius, depth, height = U(rng, 0.2, 0.3), U(rng, 0.1, 0.18), U(rng, 0.75, 0.9)
    parts = [(Ellipsoid((0, height, 0), (radius * 1.2, depth, radius), y_range=(-1.0, 0.0)), 0),
             (Torus((0, height, 0), radius * 1.1, 0.03, rot=rot_x(math.pi / 2)), 0)]
    if rng.random() < 0.5:  # pedestal
        parts.append((Frustum((0, (height - depth) / 2, 0), radius * 0.5, radius * 0.3, height - depth), 1))
    else:  # vanity cabinet underneath
        parts.append((Box((0, (height - depth) / 2, 0), (radius * 2.6, height - depth, radius * 2.2)), 1))
    faucet_z = -radius - 0.05
    parts += [(Cylinder((0, height + 0.08, faucet_z), 0.015, 0.16), 2),
              (Cylinder((0, height + 0.16, faucet_z + 0.06), 0.012, 0.12, rot=ALONG_Z), 2)]
    return parts


def build_box(rng):
    w, h, d = U(rng, 0.3, 0.9), U(rng, 0.3, 0.9), U(rng, 0.3, 0.9)
    if rng.random() < 0.5:
        return [(Box((0, h / 2, 0), (w, h, d)), 0)]
    parts = [(Box((0, h / 2, 0), (w, h, d), faces=("+x", "-x", "-y", "+z", "-z")), 0)]  # open, flaps out
    for s in (-1, 1):
        flap = rot_z(-s * U(rng, 0.3, 1.2))
        hinge = np.array([s * w / 2, h, 0])
        parts.append((Box(hinge + flap @ np.array([s * w / 4, 0, 0]), (w / 2, 0.005, d), rot=flap), 1))
    return parts


def build_bin(rng):
    radius, height = U(rng, 0.15, 0.3), U(rng, 0.35, 0.8)
    if rng.random() < 0.3:  # square bin
        parts = [(Box((0, height / 2, 0), (2 * radius, height, 2 * radius), faces=("+x", "-x", "-y", "+z", "-z")), 0)]
    else:
        parts = [(Frustum((0, height / 2, 0), radius, radius * U(rng, 1.0, 1.25), height, top=False), 0)]
    if rng.random() < 0.3:  # swing lid
        parts.append((Ellipsoid((0, height, 0), (radius * 1.1, radius * 0.5, radius * 1.1), y_range=(0.0, 1.0)), 1))
    return parts


def build_bag(rng):
    w, h, d = U(rng, 0.3, 0.55), U(rng, 0.25, 0.45), U(rng, 0.1, 0.22)
    strap = U(rng, 0.15, 0.3) * w if rng.random() < 0.6 else U(rng, 0.4, 0.6)  # hand handle or shoulder strap
    return [(Box((0, h / 2, 0), (w, h, d)), 1),
            (Ellipsoid((0, h, 0), (w / 2, 0.04, d / 2), y_range=(0.0, 1.0)), 1),
            (Torus((0, h, 0), strap, 0.015, arc=(0.0, math.pi)), 0)]


def build_pillow(rng):
    rx, ry, rz = U(rng, 0.22, 0.4), U(rng, 0.05, 0.12), U(rng, 0.15, 0.28)
    parts = [(Ellipsoid((0, 0, 0), (rx, ry, rz)), 0)]
    # pinched corners make it a pillow rather than a plain ellipsoid
    parts += [(Ellipsoid((x, 0, z), (rx * 0.3, ry * 0.4, rz * 0.3)), 0) for x, z in _four(rx * 0.75, rz * 0.75)]
    return parts


def build_airplane(rng):
    length, radius = U(rng, 1.6, 2.4), U(rng, 0.07, 0.14)
    span, chord, sweep = U(rng, 1.2, 2.4), U(rng, 0.2, 0.45), U(rng, 0.0, 0.5)
    wing_x = U(rng, -0.1, 0.15) * length
    parts = [(Ellipsoid((0, 0, 0), (length / 2, radius, radius)), 0)]
    for s in (-1, 1):  # swept half wings
        sweep_rot = rot_y(s * sweep)
        center = np.array([wing_x, -radius * 0.3, 0]) + sweep_rot @ np.array([0, 0, s * span / 4])
        parts.append((Box(center, (chord, 0.03, span / 2), rot=sweep_rot), 1))
    fin_h, tail_x = U(rng, 0.2, 0.4), -length / 2 + 0.12
    parts += [(Box((tail_x, radius * 0.5 + fin_h / 2, 0), (U(rng, 0.15, 0.3), fin_h, 0.02)), 2),
              (Box((tail_x, radius * 0.3, 0), (0.15, 0.02, U(rng, 0.4, 0.8))), 2)]
    if rng.random() < 0.85:
        per_side = int(rng.integers(1, 3))
        for s in (-1, 1):
            for k in range(per_side):
                z = s * span * (0.15 + 0.15 * k)
                x = wing_x + 0.1 - math.tan(sweep) * abs(z) * 0.5
                parts.append((Cylinder((x, -radius - 0.05, z), U(rng, 0.04, 0.07), U(rng, 0.2, 0.35), rot=ALONG_X), 3))
    return parts


def build_car(rng):
    length, width, body_h, wheel_r = U(rng, 1.6, 2.2), U(rng, 0.7, 0.9), U(rng, 0.3, 0.45), U(rng, 0.15, 0.22)
    cabin_l, cabin_h, cabin_x = length * U(rng, 0.35, 0.6), U(rng, 0.25, 0.4), U(rng, -0.2, 0.05) * length
    body_y = wheel_r * 0.8 + body_h / 2
    top = body_y + body_h / 2
    hood_l = length / 2 - (cabin_x + cabin_l / 2)
    parts = [(Box((0, body_y, 0), (length, body_h, width), faces=("+x", "-x", "-y", "+z", "-z")), 3),
             (Box((-(length / 2 - (length - hood_l) / 2), top, 0), (length - hood_l, 0.0, width), faces=("+y",)), 3),
             (Box((length / 2 - hood_l / 2, top + 0.01, 0), (hood_l, 0.02, width)), 1),
             (Box((cabin_x, top + cabin_h / 2, 0), (cabin_l, cabin_h, width * 0.85)), 0)]
    for x, z in _four(length / 2 - wheel_r * 1.4, width / 2):
        parts.append((Cylinder((x, wheel_r, z), wheel_r, U(rng, 0.1, 0.15), rot=ALONG_Z), 2))
    return parts


def build_lamp(rng):
    base_r, pole_h = U(rng, 0.1, 0.25), U(rng, 0.5, 1.4)
    shade_rb, shade_rt, shade_h = U(rng, 0.15, 0.3), U(rng, 0.06, 0.15), U(rng, 0.15, 0.3)
    parts = [(Cylinder((0, 0.02, 0), base_r, 0.04), 0)]
    if rng.random() < 0.35:  # desk lamp: bent arm, shade pointing down-forward
        lean = U(rng, 0.3, 0.8)
        arm = rot_z(-lean)
        parts.append((Cylinder((0, 0.04 + pole_h / 4, 0), 0.015, pole_h / 2, bottom=False, top=False), 1))
        elbow = np.array([0, 0.04 + pole_h / 2, 0])
        parts.append((Cylinder(elbow + arm @ np.array([0, pole_h / 4, 0]), 0.015, pole_h / 2, rot=arm,
                               bottom=False, top=False), 1))
        head = elbow + arm @ np.array([0, pole_h / 2, 0])
        tilt = rot_z(-lean - 2.2)
        parts.append((Frustum(head + tilt @ np.array([0, shade_h / 2, 0]), shade_rt, shade_rb, shade_h, rot=tilt,
                              bottom=False, top=False), 2))
        parts.append((Ellipsoid(head + tilt @ np.array([0, shade_h * 0.6, 0]), (0.04, 0.04, 0.04)), 3))
        return parts
    shade_y = 0.04 + pole_h
    parts += [(Cylinder((0, 0.04 + pole_h / 2, 0), U(rng, 0.01, 0.03), pole_h, bottom=False, top=False), 1),
              (Frustum((0, shade_y, 0), shade_rb, shade_rt, shade_h, bottom=False, top=False), 2),
              (Ellipsoid((0, shade_y - shade_h * 0.2, 0), (0.05, 0.06, 0.05)), 3)]
    return parts


def build_mug(rng):
    radius, height = U(rng, 0.25, 0.4), U(rng, 0.5, 0.9)
    loop = U(rng, 0.25, 0.4) * height
    return [(Frustum((0, height / 2, 0), radius, radius * U(rng, 1.0, 1.15), height, top=False), 1),
            (Torus((radius + loop * 0.5, height * 0.55, 0), loop, U(rng, 0.02, 0.04),
                   arc=(-math.pi / 2, math.pi / 2)), 0)]


def build_bottle(rng):
    radius, body_h = U(rng, 0.1, 0.2), U(rng, 0.4, 0.7)
    neck_r, shoulder_h, neck_h = U(rng, 0.03, 0.06), U(rng, 0.05, 0.15), U(rng, 0.08, 0.2)
    return [(Cylinder((0, body_h / 2, 0), radius, body_h, top=False), 0),
            (Frustum((0, body_h + shoulder_h / 2, 0), radius, neck_r, shoulder_h, bottom=False, top=False), 0),
            (Cylinder((0, body_h + shoulder_h + neck_h / 2, 0), neck_r, neck_h, bottom=False, top=False), 1),
            (Cylinder((0, body_h + shoulder_h + neck_h + 0.02, 0), neck_r * 1.2, 0.04), 1)]


def build_bowl(rng):
    radius, depth = U(rng, 0.4, 0.6), U(rng, 0.15, 0.35)
    parts = [(Ellipsoid((0, depth, 0), (radius, depth, radius), y_range=(-1.0, 0.0)), 0),
             (Torus((0, depth, 0), radius, 0.015, rot=rot_x(math.pi / 2)), 0)]
    if rng.random() < 0.6:
        parts.append((Cylinder((0, 0.01, 0), radius * U(rng, 0.3, 0.5), 0.03, top=False), 1))
    return parts


def build_cone(rng):
    radius, height = U(rng, 0.2, 0.5), U(rng, 0.4, 1.0)
    parts = [(Frustum((0, height / 2, 0), radius, radius * U(rng, 0.0, 0.1), height), 0)]
    if rng.random() < 0.5:  # traffic cone foot
        parts.append((Box((0, 0.01, 0), (radius * 2.4, 0.02, radius * 2.4)), 1))
    return parts


def build_guitar(rng):
    lower, upper, thick = U(rng, 0.17, 0.24), U(rng, 0.12, 0.17), U(rng, 0.04, 0.07)
    neck_l, head_l = U(rng, 0.45, 0.65), U(rng, 0.12, 0.2)
    body_top = 2 * lower * 0.95 + upper
    return [(Ellipsoid((0, lower, 0), (lower, lower * 1.1, thick)), 2),
            (Ellipsoid((0, 2 * lower * 0.95, 0), (upper, upper, thick)), 2),
            (Box((0, body_top + neck_l / 2 - 0.05, 0), (0.06, neck_l, 0.03)), 1),
            (Box((0, body_top + neck_l + head_l / 2 - 0.06, -0.015), (0.09, head_l, 0.025),
                 rot=rot_x(U(rng, 0.1, 0.3))), 0)]


def build_laptop(rng):
    width, depth, thick = U(rng, 0.3, 0.42), U(rng, 0.2, 0.3), U(rng, 0.012, 0.025)
    opening = math.radians(U(rng, 95, 130))
    screen_depth = depth * U(rng, 0.9, 1.0)
    hinge = np.array([0, thick, -depth / 2])
    direction = np.array([0, math.sin(opening), math.cos(opening)])  # from the hinge along the lid
    return [(Box((0, thick / 2, 0), (width, thick, depth)), 0),
            (Box(hinge + direction * screen_depth / 2, (width, 0.008, screen_depth), rot=rot_x(-opening)), 1)]


def build_loudspeaker(rng):
    width, height, depth = U(rng, 0.2, 0.4), U(rng, 0.3, 0.8), U(rng, 0.2, 0.35)
    parts = [(Box((0, height / 2, 0), (width, height, depth)), 0)]
    drivers = int(rng.integers(1, 4))
    for k in range(drivers):
        r = min(width * 0.4, height / drivers * 0.4) * (0.6 if k == 0 and drivers > 1 else 1.0)
        y = height * (drivers - k - 0.5) / drivers
        parts.append((Frustum((0, y, depth / 2 - 0.02), r * 0.3, r, 0.04, rot=ALONG_Z, bottom=True, top=False), 1))
    return parts


def build_rifle(rng):
    barrel_l, body_l, stock_l = U(rng, 0.35, 0.6), U(rng, 0.25, 0.4), U(rng, 0.25, 0.35)
    parts = [(Cylinder((body_l / 2 + barrel_l / 2, 0.02, 0), U(rng, 0.01, 0.018), barrel_l, rot=ALONG_X), 0),
             (Box((0, 0, 0), (body_l, U(rng, 0.06, 0.1), 0.045)), 1),
             (Box((-body_l / 2 - stock_l / 2, -0.02, 0), (stock_l, U(rng, 0.08, 0.13), 0.04),
                  rot=rot_z(U(rng, 0.0, 0.15))), 2),
             (Box((-body_l / 4, -0.08, 0), (0.04, 0.1, 0.035), rot=rot_z(-0.3)), 1)]
    if rng.random() < 0.7:
        parts.append((Box((body_l / 6, -0.08, 0), (0.05, U(rng, 0.08, 0.15), 0.03), rot=rot_z(0.15)), 1))
    if rng.random() < 0.5:  # scope
        parts.append((Cylinder((0, 0.08, 0), 0.02, body_l * 0.8, rot=ALONG_X), 1))
    return parts


def build_telephone(rng):
    if rng.random() < 0.65:  # smartphone standing up
        w, h, t = U(rng, 0.065, 0.09), U(rng, 0.12, 0.17), U(rng, 0.007, 0.012)
        return [(Box((0, h / 2, 0), (w, h, t)), 0),
                (Box((0, h / 2, t / 2 + 0.001), (w * 0.9, h * 0.85, 0.002)), 1),
                (Cylinder((-w * 0.25, h * 0.85, -t / 2 - 0.002), 0.008, 0.004, rot=ALONG_Z), 2)]
    w, d, h = U(rng, 0.15, 0.22), U(rng, 0.15, 0.22), U(rng, 0.05, 0.08)  # desk phone with handset
    return [(Box((0, h / 2, 0), (w, h, d)), 0),
            (Cylinder((0, h + 0.025, -d * 0.2), 0.022, w * 1.1, rot=ALONG_X), 2),
            (Box((0, h + 0.002, d * 0.15), (w * 0.6, 0.004, d * 0.45)), 1)]


def build_watercraft(rng):
    length, width, depth = U(rng, 1.5, 2.5), U(rng, 0.35, 0.7), U(rng, 0.15, 0.35)
    parts = [(Ellipsoid((0, 0, 0), (length / 2, depth, width / 2), y_range=(-1.0, 0.0)), 0),
             (Box((0, 0, 0), (length * 0.95, 0.0, width * 0.9), faces=("+y",)), 1)]
    if rng.random() < 0.4:  # sailboat
        mast_h = U(rng, 0.8, 1.6)
        parts += [(Cylinder((length * 0.1, mast_h / 2, 0), 0.015, mast_h), 2),
                  (Box((-length * 0.1, mast_h * 0.5, 0), (length * 0.35, mast_h * 0.8, 0.005)), 2)]
    else:  # motor ship: stacked cabins and a funnel
        levels = int(rng.integers(1, 3))
        for k in range(levels):
            cabin_l = length * U(rng, 0.2, 0.4) * (1 - 0.3 * k)
            cabin_h = U(rng, 0.1, 0.2)
            cabin_w = width * (0.6 - 0.1 * k)
            parts.append((Box((-length * 0.1, cabin_h / 2 + k * 0.18, 0), (cabin_l, cabin_h, cabin_w)), 2))
        parts.append((Cylinder((-length * 0.25, 0.25 + 0.1 * levels, 0), 0.05, 0.25), 2))
    return parts


def build_cap(rng):
    radius = U(rng, 0.25, 0.35)
    visor = U(rng, 0.15, 0.25)
    return [(Ellipsoid((0, 0, 0), (radius, radius * U(rng, 0.6, 0.9), radius), y_range=(0.0, 1.0)), 1),
            (Ellipsoid((0, radius * 0.75, 0), (0.03, 0.02, 0.03)), 1),
            (Box((0, 0.01, radius + visor / 2 - 0.05), (radius * 1.6, 0.01, visor), rot=rot_x(U(rng, 0.0, 0.25))), 0)]


def build_earphone(rng):
    radius, cup_r, cup_t = U(rng, 0.3, 0.45), U(rng, 0.1, 0.18), U(rng, 0.05, 0.1)
    cord_l = U(rng, 0.3, 0.6)
    return [(Torus((0, 0, 0), radius, U(rng, 0.015, 0.03), arc=(0.1, math.pi - 0.1)), 1),
            (Cylinder((radius, -cup_r * 0.5, 0), cup_r, cup_t, rot=ALONG_X), 0),
            (Cylinder((-radius, -cup_r * 0.5, 0), cup_r, cup_t, rot=ALONG_X), 0),
            (Cylinder((-radius, -cup_r * 1.5 - cord_l / 2, 0), 0.008, cord_l, bottom=False, top=False), 2)]


def build_knife(rng):
    blade_l, blade_w, handle_l = U(rng, 0.15, 0.3), U(rng, 0.025, 0.05), U(rng, 0.1, 0.14)
    parts = [(Box((blade_l * 0.4, 0, 0), (blade_l * 0.8, blade_w, 0.004)), 0),
             (Box((blade_l * 0.85, blade_w * 0.15, 0), (blade_l * 0.3, blade_w * 0.6, 0.004), rot=rot_z(0.25)), 0),
             (Box((-handle_l / 2, 0, 0), (handle_l, blade_w * 0.9, U(rng, 0.015, 0.025))), 1)]
    if rng.random() < 0.5:  # guard
        parts.append((Box((0, 0, 0), (0.01, blade_w * 1.6, 0.025)), 1))
    return parts


def build_motorbike(rng):
    wheelbase, wheel_r = U(rng, 1.2, 1.6), U(rng, 0.25, 0.35)
    front, rear = np.array([wheelbase / 2, wheel_r, 0]), np.array([-wheelbase / 2, wheel_r, 0])
    frame_y = wheel_r * 1.6
    parts = [(Torus(front, wheel_r, 0.05), 2), (Torus(rear, wheel_r, 0.05), 2),
             (Cylinder(front, wheel_r * 0.3, 0.06, rot=ALONG_Z), 2),
             (Cylinder(rear, wheel_r * 0.3, 0.06, rot=ALONG_Z), 2),
             (Box((0, frame_y - 0.1, 0), (wheelbase * 0.6, U(rng, 0.2, 0.3), 0.2)), 5),  # engine block
             (Box((-wheelbase * 0.3, frame_y, 0), (wheelbase * 0.45, 0.06, 0.08), rot=rot_z(0.2)), 5)]
    fork = rot_z(U(rng, 0.3, 0.5))
    fork_l = frame_y + 0.35 - wheel_r
    parts.append((Cylinder(front + fork @ np.array([0, fork_l / 2, 0]), 0.025, fork_l, rot=fork), 5))
    bar = front + fork @ np.array([0, fork_l, 0])
    parts += [(Ellipsoid((wheelbase * 0.12, frame_y + 0.15, 0), (0.25, 0.12, 0.14)), 0),
              (Box((-wheelbase * 0.18, frame_y + 0.1, 0), (0.4, 0.08, 0.22)), 1),
              (Cylinder(bar, 0.015, U(rng, 0.5, 0.7), rot=ALONG_Z), 3),
              (Ellipsoid(bar + np.array([0.08, -0.1, 0]), (0.05, 0.07, 0.07)), 4)]
    return parts


def build_pistol(rng):
    slide_l, slide_h = U(rng, 0.16, 0.24), U(rng, 0.03, 0.045)
    grip_l, grip_angle = U(rng, 0.1, 0.14), U(rng, 0.15, 0.35)
    grip = rot_z(grip_angle)
    grip_top = np.array([-slide_l * 0.35, -slide_h / 2, 0])
    return [(Box((0, 0, 0), (slide_l, slide_h, 0.03)), 0),
            (Cylinder((slide_l / 2 + 0.01, slide_h * 0.15, 0), 0.008, 0.03, rot=ALONG_X), 0),
            (Box(grip_top + grip @ np.array([0, -grip_l / 2, 0]), (0.035, grip_l, 0.028), rot=grip), 1),
            (Torus((-slide_l * 0.1, -slide_h / 2 - 0.012, 0), 0.02, 0.003, arc=(math.pi, 2 * math.pi)), 2),
            (Box((-slide_l * 0.12, -slide_h / 2 - 0.012, 0), (0.006, 0.02, 0.008), rot=rot_z(0.3)), 2)]


def build_rocket(rng):
    radius, height, nose_h = U(rng, 0.07, 0.14), U(rng, 0.8, 1.4), U(rng, 0.15, 0.35)
    fins, fin_h, fin_w = int(rng.integers(3, 5)), U(rng, 0.15, 0.3), U(rng, 0.08, 0.15)
    parts = [(Cylinder((0, height / 2, 0), radius, height, top=False), 0),
             (Frustum((0, height + nose_h / 2, 0), radius, 0.0, nose_h, bottom=False, top=False), 2)]
    for k in range(fins):
        spin = rot_y(2 * math.pi * k / fins)
        parts.append((Box(spin @ np.array([radius + fin_w / 2, fin_h / 2, 0]), (fin_w, fin_h, 0.01), rot=spin), 1))
    return parts


def build_skateboard(rng):
    length, width, deck_y = U(rng, 0.7, 0.85), U(rng, 0.18, 0.24), 0.1
    kick = U(rng, 0.2, 0.45)
    flat = length * 0.8
    parts = [(Box((0, deck_y, 0), (flat, 0.015, width)), 1)]
    for s in (-1, 1):
        tilt = rot_z(s * kick)
        parts.append((Box(np.array([s * flat / 2, deck_y, 0]) + tilt @ np.array([s * length * 0.06, 0, 0]),
                          (length * 0.12, 0.015, width), rot=tilt), 1))
        parts.append((Box((s * flat * 0.35, deck_y - 0.03, 0), (0.05, 0.04, width * 0.8)), 2))
        parts += [(Cylinder((s * flat * 0.35, 0.03, z * width * 0.42), 0.03, 0.03, rot=ALONG_Z), 0) for z in (-1, 1)]
    return parts


BUILDERS = {name[len("build_"):]: fn for name, fn in globals().items() if name.startswith("build_")}
assert set(BUILDERS) == set(FAMILY_PARTS), set(BUILDERS) ^ set(FAMILY_PARTS)


def make_shape(family, rng, yaw=True):
    """One random instance of a family, turned about the up axis (y) by a random angle."""
    parts = BUILDERS[family](rng)
    if yaw:
        turn = rot_y(U(rng, 0, 2 * math.pi))
        parts = [(prim.moved(turn, (0, 0, 0)), part) for prim, part in parts]
    return parts


def sample_object(family, rng, n=POINTS_PER_OBJECT, noise=0.004):
    """Points (n,3) float32 on the unit sphere, normals (n,3) float32, part ids (n,)."""
    points, normals, part_ids, _ = sample_parts(make_shape(family, rng), n, rng)
    points = normalise_unit_sphere(points) + rng.normal(0, noise, points.shape)
    return normalise_unit_sphere(points).astype(np.float32), normals.astype(np.float32), part_ids

# --------------------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------------------


def write_h5(path, **arrays):
    """One h5 file; track_times=False keeps the file bytes identical between runs with the same seed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", track_order=False) as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value, track_times=False)


def write_lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def write_ply(path, points, binary):
    """A PLY with one `vertex` element of float x, y, z. Binary files go through plyfile; ascii ones are
    written directly (same format, plyfile reads both) because plyfile writes text row by row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    points = np.asarray(points, dtype="<f4")
    if binary:
        vertex = np.empty(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
        vertex["x"], vertex["y"], vertex["z"] = points[:, 0], points[:, 1], points[:, 2]
        PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<").write(str(path))
        return
    header = (f"ply\nformat ascii 1.0\nelement vertex {len(points)}\nproperty float x\nproperty float y\n"
              "property float z\nend_header\n")
    rows = "\n".join(" ".join(f"{v:.7g}" for v in row) for row in points.tolist())
    path.write_text(header + rows + "\n")


def write_png(path, rgba):
    """An 8-bit RGBA PNG. Written directly (filter 'none', zlib level 1): twice as fast as Pillow's
    encoder, whose adaptive row filters cost more than they save on these mostly empty images; the
    format is plain PNG, so Pillow (and everything else) reads it."""
    height, width, _ = rgba.shape
    rows = np.zeros((height, width * 4 + 1), dtype=np.uint8)  # each scanline starts with filter type 0
    rows[:, 1:] = rgba.reshape(height, width * 4)

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8 bits, colour type 6 = RGBA
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 1))
                     + chunk(b"IEND", b""))


def split_files(count, parts):
    """Row ranges for `parts` files (as many as the real archive has, fewer if there are too few rows)."""
    return [chunk for chunk in np.array_split(np.arange(count), min(parts, max(count, 1))) if len(chunk)]


# --------------------------------------------------------------------------------------------------------
# A small point-splat renderer for the ShapeNetRendering views
# --------------------------------------------------------------------------------------------------------


def render_view(points, normals, colours, closed, azimuth, elevation, distance, size=IMAGE_SIZE, fov=FIELD_OF_VIEW):
    """RGBA uint8 image of coloured surface points seen from a camera on a sphere around the origin
    (azimuth about the up axis y, elevation above the horizon, degrees), looking at the origin.
    Each point is a 3x3 splat; a z-buffer keeps the nearest; Lambert shading with a light near the camera;
    the background stays transparent (alpha 0). Points of closed surfaces (`closed`) that face away from
    the camera are hidden anyway and are dropped first; open shells (a bowl, a lamp shade) show both sides."""
    az, el = math.radians(azimuth), math.radians(elevation)
    forward = -np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
    eye = -distance * forward
    right = np.array([-forward[2], 0.0, forward[0]]) / math.hypot(forward[0], forward[2])  # forward x up
    up = np.array([right[1] * forward[2] - right[2] * forward[1], right[2] * forward[0] - right[0] * forward[2],
                   right[0] * forward[1] - right[1] * forward[0]])
    rel = points - eye
    facing = normals @ forward
    keep = ~closed | (facing < 0)
    rel, facing, colours = rel[keep], facing[keep], colours[keep]
    depth = rel @ forward
    focal = (size / 2) / math.tan(math.radians(fov) / 2)
    # pixel coordinates in a frame with a 2-pixel margin, so that splats never need bounds checks
    pad, width = 2, size + 4
    px = np.clip(np.floor(size / 2 + focal * (rel @ right) / depth), -1, size).astype(np.int32) + pad
    py = np.clip(np.floor(size / 2 - focal * (rel @ up) / depth), -1, size).astype(np.int32) + pad
    light = -forward + 0.6 * up - 0.4 * right
    shade = 0.3 + 0.7 * np.abs(normals[keep] @ (light / np.linalg.norm(light)))
    rgba = np.full((len(depth), 4), 255, dtype=np.uint8)
    rgba[:, :3] = np.clip(colours * shade[:, None] * 255, 0, 255)

    splat = np.array([dy * width + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)], dtype=np.int32)
    pixel = ((py * width + px)[:, None] + splat).ravel()
    splat_depth = np.repeat(depth, len(splat))
    # z-buffer: the nearest depth per pixel, then the splats that reach it
    nearest = np.full(width * width, np.inf)
    np.minimum.at(nearest, pixel, splat_depth)
    front = np.flatnonzero(splat_depth == nearest[pixel])
    image = np.zeros((width * width, 4), dtype=np.uint8)
    image[pixel[front]] = rgba[front // len(splat)]
    image = _fill_pinholes(image.reshape(width, width, 4))
    return np.ascontiguousarray(image[pad:pad + size, pad:pad + size])


def _fill_pinholes(image, passes=2):
    """Random surface samples leave pinholes on large faces; a transparent pixel with at least three
    opaque 4-neighbours takes their mean colour (the outline of the object is left alone)."""
    steps = ((-1, 0), (1, 0), (0, -1), (0, 1))
    for _ in range(passes):
        opaque = (image[..., 3] > 0).astype(np.int32)
        count = np.zeros_like(opaque)
        count[1:-1, 1:-1] = opaque[:-2, 1:-1] + opaque[2:, 1:-1] + opaque[1:-1, :-2] + opaque[1:-1, 2:]
        ys, xs = np.nonzero((opaque == 0) & (count >= 3))
        if len(ys) == 0:
            break
        total = np.zeros((len(ys), 3), np.int32)
        for dy, dx in steps:
            total += image[ys + dy, xs + dx, :3] * opaque[ys + dy, xs + dx][:, None]
        image[ys, xs, :3] = total // count[ys, xs][:, None]
        image[ys, xs, 3] = 255
    return image


# --------------------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------------------


def stream(seed, *keys):
    """An independent random stream for (seed, dataset, ...): draws never depend on other datasets or on
    how many objects came before."""
    return np.random.default_rng([seed, *keys])


def make_modelnet40(root, seed, cfg):
    """modelnet40_ply_hdf5_2048/: ply_data_train{0..4}.h5, ply_data_test{0,1}.h5 with data float32
    (n,2048,3) on the unit sphere, normal float32 (n,2048,3), label uint8 (n,1); shape_names.txt (all 40
    names), train_files.txt / test_files.txt listing the h5 paths as the real ones do (data/... prefix)."""
    folder = root / "modelnet40_ply_hdf5_2048"
    classes = sorted(MODELNET40_FAMILIES)
    counts = {}
    for split, per_class, n_files in (("train", cfg["modelnet_train"], 5), ("test", cfg["modelnet_test"], 2)):
        order_rng = stream(seed, TAG_MODELNET, SPLIT_CODES[split])
        jobs = [(name, k) for name in classes for k in range(per_class)]
        jobs = [jobs[i] for i in order_rng.permutation(len(jobs))]  # real files are shuffled across classes
        data = np.zeros((len(jobs), POINTS_PER_OBJECT, 3), np.float32)
        normal = np.zeros_like(data)
        label = np.zeros((len(jobs), 1), np.uint8)
        for row, (name, k) in enumerate(jobs):
            rng = stream(seed, TAG_MODELNET, SPLIT_CODES[split], MODELNET40_NAMES.index(name), k)
            data[row], normal[row], _ = sample_object(MODELNET40_FAMILIES[name], rng)
            label[row, 0] = MODELNET40_NAMES.index(name)
        listed = []
        for index, rows in enumerate(split_files(len(jobs), n_files)):
            write_h5(folder / f"ply_data_{split}{index}.h5", data=data[rows], normal=normal[rows], label=label[rows])
            listed.append(f"data/modelnet40_ply_hdf5_2048/ply_data_{split}{index}.h5")
        write_lines(folder / f"{split}_files.txt", listed)
        counts[split] = len(jobs)
    write_lines(folder / "shape_names.txt", MODELNET40_NAMES)
    return {**counts, "classes_used": len(classes)}


def make_shapenet_part(root, seed, cfg):
    """shapenet_part_seg_hdf5_data/: ply_data_train{0..5}.h5, ply_data_val0.h5, ply_data_test{0,1}.h5 with
    data float32 (n,2048,3), label uint8 (n,1) category 0..15, pid uint8 (n,2048) global part id 0..49;
    {train,val,test}_hdf5_file_list.txt (bare file names) and all_object_categories.txt."""
    folder = root / "shapenet_part_seg_hdf5_data"
    counts = {}
    for split, per_class, n_files in (("train", cfg["part_train"], 6), ("val", cfg["part_val"], 1),
                                      ("test", cfg["part_test"], 2)):
        order_rng = stream(seed, TAG_PART, SPLIT_CODES[split])
        jobs = [(c, k) for c in range(len(SHAPENET_PART_CATEGORIES)) for k in range(per_class)]
        jobs = [jobs[i] for i in order_rng.permutation(len(jobs))]
        data = np.zeros((len(jobs), POINTS_PER_OBJECT, 3), np.float32)
        label = np.zeros((len(jobs), 1), np.uint8)
        pid = np.zeros((len(jobs), POINTS_PER_OBJECT), np.uint8)
        for row, (c, k) in enumerate(jobs):
            name, _, n_parts = SHAPENET_PART_CATEGORIES[c]
            rng = stream(seed, TAG_PART, SPLIT_CODES[split], c, k)
            data[row], _, parts = sample_object(SHAPENET_PART_FAMILIES[name], rng)
            assert parts.max() < n_parts, (name, parts.max())
            label[row, 0] = c
            pid[row] = PART_OFFSETS[c] + parts
        listed = []
        for index, rows in enumerate(split_files(len(jobs), n_files)):
            write_h5(folder / f"ply_data_{split}{index}.h5", data=data[rows], label=label[rows], pid=pid[rows])
            listed.append(f"ply_data_{split}{index}.h5")
        write_lines(folder / f"{split}_hdf5_file_list.txt", listed)
        counts[split] = len(jobs)
    write_lines(folder / "all_object_categories.txt",
                [f"{name}\t{synset}" for name, synset, _ in SHAPENET_PART_CATEGORIES])
    return counts


# ---------------------------------------- ScanObjectNN ---------------------------------------------------

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


# ---------------------------------------- S3DIS ----------------------------------------------------------

S3DIS_COLOURS = np.array([
    (225, 225, 220), (135, 120, 105), (205, 195, 175), (185, 180, 170), (195, 190, 180), (150, 185, 215),
    (120, 85, 60), (165, 125, 85), (60, 65, 80), (150, 55, 55), (125, 95, 65), (240, 240, 235), (0, 0, 0),
]) / 255.0
ROOM_TYPES = ("office", "conferenceRoom", "hallway", "storage", "lounge")
ROOM_WEIGHTS = (0.4, 0.2, 0.15, 0.1, 0.15)
LABEL = {name: k for k, name in enumerate(S3DIS_CLASSES)}


class _Room:
    """One S3DIS-like room in metres, y up, spanning [0, X] x [0, H] x [0, Z]: surfaces are sampled at a
    fixed density into labelled pieces as they are added."""

    def __init__(self, room_type, rng, cfg):
        lo, hi = cfg["room_extent"]
        self.type, self.rng, self.density = room_type, rng, cfg["room_density"]
        if room_type == "hallway":  # long and narrow
            self.x, self.z = U(rng, 1.4, 2.0), U(rng, hi, hi * 1.6)
        else:
            self.x, self.z = U(rng, lo, hi), U(rng, lo, hi)
        self.height = U(rng, 2.7, 3.2)
        self.pieces = []  # (points, label)
        self.table_tops = []  # (position, height) where clutter may stand

    def add(self, parts, label, turn=0.0, offset=(0, 0, 0)):
        parts = [(prim.moved(rot_y(turn), offset), part) for prim, part in parts]
        points = sample_parts(parts, max(int(total_area(parts) * self.density), 32), self.rng)[0]
        self.pieces.append((points, LABEL[label]))
        return points

    def spot(self, margin):
        """A random floor position at least `margin` from the walls (the middle in a small room)."""
        return (U(self.rng, min(margin, self.x / 2), max(self.x - margin, self.x / 2)), 0,
                U(self.rng, min(margin, self.z / 2), max(self.z - margin, self.z / 2)))

    def build_shell(self):
        """Floor, ceiling and walls; a door, maybe a window and a board are rectangles of a wall's plane,
        moved off it by a few cm (S3DIS labels them on the wall surface)."""
        x, z, h, rng = self.x, self.z, self.height, self.rng
        self.add([(Box((x / 2, 0, z / 2), (x, 0, z), faces=("+y",)), 0)], "floor")
        self.add([(Box((x / 2, h, z / 2), (x, 0, z), faces=("-y",)), 0)], "ceiling")
        # (surface, index of the coordinate that runs along the wall, wall length, inward normal)
        walls = [(Box((0, h / 2, z / 2), (0, h, z), faces=("+x",)), 2, z, (1, 0, 0)),
                 (Box((x, h / 2, z / 2), (0, h, z), faces=("-x",)), 2, z, (-1, 0, 0)),
                 (Box((x / 2, h / 2, 0), (x, h, 0), faces=("+z",)), 0, x, (0, 0, 1)),
                 (Box((x / 2, h / 2, z), (x, h, 0), faces=("-z",)), 0, x, (0, 0, -1))]
        door_wall, window_wall, board_wall = rng.permutation(4)[:3]

        def span(length, lo, hi):
            width = U(rng, lo, max(min(hi, length - 0.4), lo + 0.01))
            start = U(rng, 0.1, max(length - width - 0.1, 0.11))
            return start, start + width

        openings = {door_wall: ("door", span(walls[door_wall][2], 0.8, 1.0), (0.0, 2.1), 0.02)}
        if self.type not in ("hallway", "storage") or rng.random() < 0.3:
            sill = U(rng, 0.8, 1.0)
            window = span(walls[window_wall][2], 0.8, 2.0)
            openings[window_wall] = ("window", window, (sill, sill + U(rng, 1.0, 1.4)), -0.05)
        if self.type in ("office", "conferenceRoom") and rng.random() < 0.7:
            openings[board_wall] = ("board", span(walls[board_wall][2], 1.0, 2.4), (0.9, 0.9 + U(rng, 0.9, 1.2)), 0.02)
        for w, (surface, along, _, inward) in enumerate(walls):
            points = sample_parts([(surface, 0)], max(int(surface.area() * self.density), 32), rng)[0]
            on_wall = np.ones(len(points), dtype=bool)
            if w in openings:
                label, (u0, u1), (v0, v1), offset = openings[w]
                inside = ((points[:, along] >= u0) & (points[:, along] <= u1)
                          & (points[:, 1] >= v0) & (points[:, 1] <= v1))
                self.pieces.append((points[inside] + np.asarray(inward) * offset, LABEL[label]))
                on_wall = ~inside
            self.pieces.append((points[on_wall], LABEL["wall"]))

    def build_structure(self):
        """Sometimes a beam under the ceiling and a column in a corner."""
        x, z, h, rng = self.x, self.z, self.height, self.rng
        if rng.random() < 0.4:
            beam = Box((U(rng, 0.3, 0.7) * x, h - 0.2, z / 2), (0.3, 0.4, z), faces=("+x", "-x", "-y"))
            self.add([(beam, 0)], "beam")
        if rng.random() < 0.5:
            right, back = int(rng.integers(0, 2)), int(rng.integers(0, 2))
            center = (x - 0.2 if right else 0.2, h / 2, z - 0.2 if back else 0.2)
            faces = ("-x" if right else "+x", "-z" if back else "+z")
            self.add([(Box(center, (0.4, h, 0.4), faces=faces), 0)], "column")

    def furnish(self):
        """Tables with chairs around them, sofas, bookcases against a wall, clutter on tables and floor;
        how much of each depends on the room type."""
        rng, kind = self.rng, self.type
        for _ in range({"office": int(rng.integers(1, 3)), "conferenceRoom": 1, "lounge": 1}.get(kind, 0)):
            where, turn = self.spot(0.9), float(rng.integers(0, 4)) * math.pi / 2
            table = self.add(build_table(rng), "table", turn, where)
            self.table_tops.append((where, float(table[:, 1].max())))
            chairs = int(rng.integers(4, 7)) if kind == "conferenceRoom" else int(rng.integers(1, 3))
            for k in range(chairs):
                angle = turn + 2 * math.pi * k / chairs
                seat = np.array(where) + 0.8 * np.array([math.sin(angle), 0, math.cos(angle)])
                self.add(build_chair(rng), "chair", angle + math.pi, seat)
        if kind == "lounge":
            for k in range(int(rng.integers(1, 3))):
                self.add(build_sofa(rng), "sofa", k * math.pi, (self.x / 2, 0, 0.55 if k == 0 else self.z - 0.55))
        for k in range({"office": int(rng.random() < 0.7), "storage": int(rng.integers(2, 4))}.get(kind, 0)):
            self.add(build_shelf(rng), "bookcase", 0.0, (U(rng, 0.7, max(self.x - 0.7, 0.71)), 0, 0.2 + 0.01 * k))
        clutter = {"storage": int(rng.integers(4, 9)),
                   "hallway": int(rng.integers(0, 3))}.get(kind, int(rng.integers(2, 6)))
        for _ in range(clutter):
            size = U(rng, 0.1, 0.4)
            if self.table_tops and rng.random() < 0.5:
                (x, _, z), top = self.table_tops[int(rng.integers(len(self.table_tops)))]
                where = (x + U(rng, -0.4, 0.4), top, z + U(rng, -0.25, 0.25))
            else:
                where = self.spot(0.3)
            dims = (size, size * U(rng, 0.5, 2.0), size * U(rng, 0.5, 1.5))
            lifted = (0, dims[1] / 2, 0)
            shape = Box(lifted, dims) if rng.random() < 0.6 else Cylinder(lifted, size / 2, dims[1])
            self.add([(shape, 0)], "clutter", U(rng, 0, math.pi), where)

    def coloured_points(self):
        """Points, colours (class-typical colour x a per-object tint + per-point noise; clutter any colour)
        and labels. Furniture poking through a wall is cut off; a recessed window stays."""
        points, colours, labels = [], [], []
        for piece, label in self.pieces:
            base = self.rng.random(3) if label == LABEL["clutter"] else S3DIS_COLOURS[label] * U(self.rng, 0.85, 1.15)
            colours.append(np.clip(base + self.rng.normal(0, 0.03, piece.shape), 0, 1))
            points.append(piece)
            labels.append(np.full(len(piece), label))
        points, colours, labels = np.concatenate(points), np.concatenate(colours), np.concatenate(labels)
        margin = 0.1
        inside = np.all((points >= -margin) & (points <= np.array([self.x, self.height, self.z]) + margin), axis=1)
        return points[inside], colours[inside], labels[inside]


def _s3dis_room(room_type, rng, cfg):
    """Points (n,3) in metres (y up), colours (n,3) in 0..1 and labels (n,) of one random room."""
    room = _Room(room_type, rng, cfg)
    room.build_shell()
    room.build_structure()
    room.furnish()
    return room.coloured_points()


def _room_blocks(points, colours, labels, rng, block=1.0, stride=1.0, min_points=100):
    """Cut a room (z up) into 1 m x 1 m columns of 4096 points, as indoor3d_sem_seg_hdf5_data was made:
    channels 0-2 = xyz with x, y moved to the block centre (z stays the height above the floor),
    3-5 = rgb/255, 6-8 = xyz / room size (in [0, 1])."""
    points = points - points.min(axis=0)
    room_max = points.max(axis=0)
    n_x = int(math.ceil((room_max[0] - block) / stride)) + 1
    n_y = int(math.ceil((room_max[1] - block) / stride)) + 1
    data, block_labels = [], []
    for i in range(n_x):
        for j in range(n_y):
            x0, y0 = i * stride, j * stride
            inside = np.flatnonzero((points[:, 0] >= x0) & (points[:, 0] <= x0 + block)
                                    & (points[:, 1] >= y0) & (points[:, 1] <= y0 + block))
            if len(inside) < min_points:
                continue
            chosen = inside[choose_points(len(inside), S3DIS_POINTS_PER_BLOCK, rng)]
            xyz = points[chosen]
            channels = np.empty((S3DIS_POINTS_PER_BLOCK, 9), np.float32)
            channels[:, 0:3] = xyz
            channels[:, 0] -= xyz[:, 0].min() + block / 2
            channels[:, 1] -= xyz[:, 1].min() + block / 2
            channels[:, 3:6] = colours[chosen]
            channels[:, 6:9] = xyz / room_max
            data.append(channels)
            block_labels.append(labels[chosen].astype(np.uint8))
    return data, block_labels


def make_s3dis(root, seed, cfg):
    """indoor3d_sem_seg_hdf5_data/: ply_data_all_{k}.h5 with data float32 (n,4096,9), label uint8 (n,4096)
    0..12; all_files.txt (lines carry the folder prefix); room_filelist.txt (one Area_<a>_<room> per block).
    Areas 1..6, so both the Area 5 split and 6-fold cross-validation work."""
    folder = root / "indoor3d_sem_seg_hdf5_data"
    data, labels, rooms = [], [], []
    for area in range(1, 7):
        rng = stream(seed, TAG_S3DIS, area)
        seen = {}
        for _ in range(cfg["rooms_per_area"]):
            room_type = ROOM_TYPES[int(rng.choice(len(ROOM_TYPES), p=ROOM_WEIGHTS))]
            seen[room_type] = seen.get(room_type, 0) + 1
            name = f"Area_{area}_{room_type}_{seen[room_type]}"
            points, colours, room_labels = _s3dis_room(room_type, rng, cfg)
            z_up = points[:, [0, 2, 1]]  # S3DIS has z up
            blocks, block_labels = _room_blocks(z_up, colours, room_labels, rng)
            data += blocks
            labels += block_labels
            rooms += [name] * len(blocks)
    data, labels = np.stack(data), np.stack(labels)
    listed = []
    for index, start in enumerate(range(0, len(data), cfg["blocks_per_file"])):
        rows = slice(start, start + cfg["blocks_per_file"])
        write_h5(folder / f"ply_data_all_{index}.h5", data=data[rows], label=labels[rows])
        listed.append(f"indoor3d_sem_seg_hdf5_data/ply_data_all_{index}.h5")
    write_lines(folder / "all_files.txt", listed)
    write_lines(folder / "room_filelist.txt", rooms)
    return {"blocks": len(data), "rooms": len(set(rooms)), "files": len(listed)}


# ---------------------------------------- ShapeNetRender -------------------------------------------------



def _bbox_diagonal(parts):
    probe = np.concatenate([prim.sample(np.random.default_rng(0), 64)[0] for prim, _ in parts])
    return float(np.linalg.norm(probe.max(axis=0) - probe.min(axis=0)))


def _shapenet_object(root, synset, rng, binary, images, render_density):
    """One ShapeNetRender object: ShapeNet/<synset>/<id>.ply and, when `images` is "all", the 24 views of
    the same posed shape with renderings.txt and rendering_metadata.txt; "none" writes no rendering folder,
    "empty" a rendering folder with the two text files but no PNG (both are skipped by the loader)."""
    family = SHAPENET_RENDER_FAMILIES[synset]
    model_id = rng.bytes(16).hex()
    n_vertices = int(rng.integers(2000, 2601))  # real files differ in point count
    parts = make_shape(family, rng)
    # the renders need more points than the .ply, as many more as the surface is large for its size
    # (render_density extra points per unit of area / bbox diagonal^2)
    n_extra = int(np.clip(render_density * total_area(parts) / _bbox_diagonal(parts) ** 2, 1000, 9000))
    points, normals, part_ids, which = sample_parts(parts, n_vertices + n_extra, rng)
    closed = np.array([prim.closed() for prim, _ in parts])[which]
    lo, hi = points.min(axis=0), points.max(axis=0)
    points = (points - (lo + hi) / 2) / np.linalg.norm(hi - lo)  # ShapeNet convention: bbox diagonal 1
    write_ply(root / "ShapeNet" / synset / f"{model_id}.ply", points[:n_vertices].astype(np.float32), binary)
    if images == "none":
        return model_id
    folder = root / "ShapeNetRendering" / synset / model_id / "rendering"
    cameras = [(U(rng, 0, 360), U(rng, 20, 35), U(rng, 0.7, 0.9)) for _ in range(VIEWS)]
    palette = np.array(FAMILY_COLOURS.get(family, DEFAULT_COLOURS), dtype=float)
    palette = np.clip(palette * rng.uniform(0.8, 1.2, (len(palette), 1)), 0, 1)  # per-object tint
    colours = np.clip(palette[part_ids % len(palette)] + rng.normal(0, 0.02, points.shape), 0, 1)
    write_lines(folder / "renderings.txt", [f"{v:02d}.png" for v in range(VIEWS)])
    write_lines(folder / "rendering_metadata.txt",
                [f"{az:.6f} {el:.6f} 0 {dist:.6f} {FIELD_OF_VIEW:g}" for az, el, dist in cameras])
    if images == "all":
        for v, (az, el, dist) in enumerate(cameras):
            image = render_view(points, normals, colours, closed, az, el, dist * RENDER_DISTANCE_SCALE)
            write_png(folder / f"{v:02d}.png", image)
    return model_id


def make_shapenet_render(root, seed, cfg):
    """ShapeNet/<synset>/<model_id>.ply (vertex x, y, z float32; alternately binary little endian and
    ascii; 2000-2600 vertices) and ShapeNetRendering/<synset>/<model_id>/rendering/00.png..23.png
    (137x137 RGBA, transparent background) + renderings.txt + rendering_metadata.txt (azimuth elevation
    in-plane-rotation distance-ratio field-of-view per view). A few objects have no rendering images."""
    synsets = sorted(SHAPENET_RENDER_FAMILIES)
    rendered = 0
    for s, synset in enumerate(synsets):
        for k in range(cfg["render_per_synset"]):
            _shapenet_object(root, synset, stream(seed, TAG_RENDER, s, k), binary=(s + k) % 2 == 0, images="all",
                             render_density=cfg["render_density"])
            rendered += 1
    for k in range(cfg["render_missing"]):  # .ply without PNGs, as in the wild
        s = (3 * k + 1) % len(synsets)
        _shapenet_object(root, synsets[s], stream(seed, TAG_RENDER, s, 1000 + k), binary=k % 2 == 0,
                         images="none" if k % 2 == 0 else "empty", render_density=cfg["render_density"])
    return {"objects": rendered + cfg["render_missing"], "with_renderings": rendered,
            "without_renderings": cfg["render_missing"], "views": VIEWS}


# --------------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------------

DATASET_FOLDERS = ("ShapeNet", "ShapeNetRendering", "modelnet40_ply_hdf5_2048", "h5_files", "ScanObjectNN",
                   "shapenet_part_seg_hdf5_data", "indoor3d_sem_seg_hdf5_data")
MARKER = "SYNTHETIC_DATA.txt"


class RefusedRoot(FileExistsError):
    """The output folder holds dataset folders without this script's marker: perhaps the real data."""


def _prepare(root):
    """Clear an earlier synthetic copy (stale objects would be globbed by the ShapeNetRender loader), but
    never a folder with dataset folders and no marker: that may be the real data."""
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(20, "not a folder", str(root))
    root.mkdir(parents=True, exist_ok=True)
    existing = [name for name in DATASET_FOLDERS if (root / name).exists()]
    if existing and not (root / MARKER).is_file():
        raise RefusedRoot(f"{root}: holds {', '.join(existing)} but no {MARKER}; refusing to overwrite "
                              "what may be real data")
    for name in existing:
        shutil.rmtree(root / name)


def make_synthetic(root, seed=0, size="small") -> dict:
    """Write all five synthetic datasets under `root`; returns counts per dataset."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {tuple(SIZES)}, got {size!r}")
    root, cfg, started = Path(root).resolve(), SIZES[size], time.perf_counter()
    _prepare(root)
    (root / MARKER).write_text(f"synthetic AdaCrossNet data: make_synthetic(seed={seed}, size={size!r}); "
                               "not real data, see data/README.md\n")
    summary = {"root": str(root), "seed": seed, "size": size}
    summary["shapenet_render"] = make_shapenet_render(root, seed, cfg)
    summary["modelnet40"] = make_modelnet40(root, seed, cfg)
    summary["scanobjectnn"] = make_scanobjectnn(root, seed, cfg)
    summary["shapenetpart"] = make_shapenet_part(root, seed, cfg)
    summary["s3dis"] = make_s3dis(root, seed, cfg)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    return summary


def format_summary(summary) -> str:
    r, m, s, p, d = (summary[k] for k in ("shapenet_render", "modelnet40", "scanobjectnn", "shapenetpart", "s3dis"))
    return "\n".join([
        f"synthetic data (size={summary['size']}, seed={summary['seed']}) in {summary['root']}, {summary['seconds']} s",
        f"  ShapeNetRender: {r['with_renderings']} objects x {r['views']} views, "
        f"{r['without_renderings']} without renderings",
        f"  ModelNet40:     {m['train']} train / {m['test']} test, {m['classes_used']} of 40 classes",
        f"  ScanObjectNN:   {s['train']} train / {s['test']} test "
        f"(PB_T50_RS {s['train_pb_t50_rs']} / {s['test_pb_t50_rs']})",
        f"  ShapeNetPart:   {p['train']} train / {p['val']} val / {p['test']} test",
        f"  S3DIS:          {d['blocks']} blocks from {d['rooms']} rooms in 6 areas, {d['files']} files",
    ])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/synthetic", help="data root to write (default: data/synthetic)")
    parser.add_argument("--seed", type=_seed, default=0)
    parser.add_argument("--size", choices=tuple(SIZES), default="small")
    args = parser.parse_args(argv)
    # Run as a file, this script cannot import the repository's utils.errors: its errors are reported here.
    try:
        summary = make_synthetic(args.out, seed=args.seed, size=args.size)
    except RefusedRoot as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        where = error.filename if error.filename is not None else args.out
        print(f"error: {where}: cannot write the synthetic data ({error.strerror or error})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"error: interrupted; {args.out} may hold partial data: run the same command again", file=sys.stderr)
        return 130
    print(format_summary(summary))
    return 0


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected 0 <= seed < 2**32, got {value}")
    return value


if __name__ == "__main__":
    sys.exit(main())
