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
