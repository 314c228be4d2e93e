"""Surface primitives (boxes, frusta, ellipsoids, tori): each samples points uniformly by area in its own
frame, then is posed by a rotation and a centre. Also the small helpers the shape builders share."""

from __future__ import annotations

import copy
import math

import numpy as np


def U(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def corners(half_x, half_z):
    """The four (x, z) corners of a rectangle centred at the origin: where legs and wheels go."""
    return [(sx * half_x, sz * half_z) for sx in (-1, 1) for sz in (-1, 1)]


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


def grid_quads(rows, columns, wrap=False, flip=False):
    """Quads (m, 4) of a (rows + 1) x (columns + 1) vertex grid numbered row by row; with `wrap` each row
    has columns + 1 vertices and closes on itself (a ring)."""
    width = columns + 1
    i, j = np.meshgrid(np.arange(rows), np.arange(width if wrap else columns), indexing="ij")
    right = (j + 1) % width if wrap else j + 1
    quads = np.stack([i * width + j, i * width + right, (i + 1) * width + right, (i + 1) * width + j], -1)
    quads = quads.reshape(-1, 4)
    return quads[:, ::-1] if flip else quads


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

    def _mesh_local(self, segments):
        raise NotImplementedError

    def mesh(self, segments):
        """The surface as polygons: vertices (n, 3) posed, and a list of (m, k) arrays of k-gons (quads of a
        grid, n-gon caps, triangles at poles and apexes). `segments` sets the resolution (around a circle,
        along an edge)."""
        vertices, polygons = self._mesh_local(max(3, int(segments)))
        return vertices @ self.rot.T + self.center, polygons

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

    def _mesh_local(self, segments):
        steps = max(1, segments // 4)
        grid = np.linspace(-0.5, 0.5, steps + 1)
        a, b = np.meshgrid(grid, grid, indexing="ij")
        vertices, quads = [], []
        for face in self.faces:
            axis, sign = "xyz".index(face[1]), 1.0 if face[0] == "+" else -1.0
            others = [k for k in range(3) if k != axis]
            local = np.zeros((steps + 1, steps + 1, 3))
            local[..., axis] = sign * 0.5
            local[..., others[0]], local[..., others[1]] = a, b
            base = sum(len(v) for v in vertices)
            vertices.append(local.reshape(-1, 3) * self.size)
            quads.append(base + grid_quads(steps, steps, flip=sign < 0))
        return np.concatenate(vertices), [np.concatenate(quads)]

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

    def _mesh_local(self, segments):
        theta = np.linspace(0, 2 * math.pi, segments, endpoint=False)
        rows = max(1, segments // 4)
        heights = np.linspace(-self.h / 2, self.h / 2, rows + 1)
        radii = np.linspace(self.rb, self.rt, rows + 1)
        vertices = np.stack([radii[:, None] * np.cos(theta), np.repeat(heights[:, None], segments, 1),
                             radii[:, None] * np.sin(theta)], axis=-1).reshape(-1, 3)
        polygons = [grid_quads(rows, segments - 1, wrap=True)]
        for present, ring, radius in ((self.bottom, 0, self.rb), (self.top, rows, self.rt)):
            if present and radius > 0:  # an n-gon cap, as CAD exports write them
                cap = ring * segments + np.arange(segments)
                polygons.append((cap if ring else cap[::-1])[None, :])
        return vertices, polygons

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

    def _mesh_local(self, segments):
        lo, hi = (math.asin(max(-1.0, min(1.0, y))) for y in self.y_range)
        rows = max(2, segments // 2)
        latitude = np.linspace(lo, hi, rows + 1)
        theta = np.linspace(0, 2 * math.pi, segments, endpoint=False)
        unit = np.stack([np.cos(latitude)[:, None] * np.cos(theta), np.repeat(np.sin(latitude)[:, None], segments, 1),
                         np.cos(latitude)[:, None] * np.sin(theta)], axis=-1).reshape(-1, 3)
        # rings at the poles collapse to one point: those quads are triangles with a repeated corner, which
        # the OFF writer keeps as quads (a real-world quirk: degenerate faces)
        return unit * self.radii, [grid_quads(rows, segments - 1, wrap=True)]

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

    def _mesh_local(self, segments):
        full = self.closed()
        around = segments if full else segments + 1
        theta = np.linspace(self.arc[0], self.arc[1], around, endpoint=not full)
        phi = np.linspace(0, 2 * math.pi, max(3, segments // 2), endpoint=False)
        ring = np.stack([np.cos(theta), np.sin(theta), np.zeros_like(theta)], axis=1)
        tube = (np.cos(phi)[None, :, None] * ring[:, None, :]
                + np.sin(phi)[None, :, None] * np.array([0.0, 0.0, 1.0]))
        vertices = (self.R * ring[:, None, :] + self.r * tube).reshape(-1, 3)
        quads = grid_quads(around - 1, len(phi) - 1, wrap=True)
        if full:  # close the seam between the last ring and the first
            last, first = (around - 1) * len(phi), 0
            j = np.arange(len(phi))
            quads = np.concatenate([quads, np.stack([last + j, last + (j + 1) % len(phi), first + (j + 1) % len(phi),
                                                     first + j], axis=1)])
        return vertices, [quads]

    def _sample_local(self, rng, n):
        theta = rng.uniform(*self.arc, n)
        phi = rng.uniform(0, 2 * math.pi, n)
        ring = np.stack([np.cos(theta), np.sin(theta), np.zeros(n)], axis=1)
        normals = np.cos(phi)[:, None] * ring + np.sin(phi)[:, None] * np.array([0.0, 0.0, 1.0])
        return self.R * ring + self.r * normals, normals
