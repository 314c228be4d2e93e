"""A CPU renderer for the views paired with each shape in pretraining: meshes rasterised, clouds drawn as splats.

Pure numpy, no OpenGL, no GPU, deterministic: the same arrays and camera give the same bytes, run after run and
in any number of processes (integer pixel grids, float64 arithmetic, ties in the depth buffer broken by input
order). Another BLAS or numpy build may round a projection differently and move an edge pixel.

Camera (as ShapeNetRendering's rendering_metadata.txt describes a view): a pinhole on a sphere around the
origin, `azimuth` degrees about the up axis y (0 looks along -z), `elevation` degrees above the horizon,
`distance` from the origin, vertical and horizontal field of view `fov` degrees, a square image of `size`
pixels whose pixel (row i, column j) samples the point (j + 0.5, i + 0.5). The shapes are expected in the unit
sphere (tools.make_pretrain_set puts them there); with the default distance 4.9 and field of view 25 degrees
the unit sphere fills 94 % of the frame.

Meshes (`render_mesh`): every triangle is rasterised at the pixel centres it covers, the nearest one kept by a
depth buffer on 1/depth (which is linear in screen space, so the buffer is exact for planar triangles), and
shaded by Lambert's law, two-sided because CAD meshes do not orient their faces consistently: colour x
(AMBIENT + (1 - AMBIENT) |n . l|) with n the face normal and l a light fixed to the camera, above and to the
left of it, so every view of every shape is lit alike.

Clouds (`render_splats`): every point is a disc facing the camera whose radius follows the local point density
(`splat_radii`: 0.6 x the distance to the point's 4th nearest neighbour, a trade between holes where random
samples are sparse and overhang beyond the outline; docs/pretrain_sets.md), bulging towards the camera like a
sphere so that overlapping splats meet along a curve, and shaded by depth: the nearest point of the cloud at full
brightness, the farthest at AMBIENT.

Both return (size, size, 4) uint8 RGBA with a transparent background (alpha 0), as ShapeNetRendering's PNGs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

AMBIENT = 0.25
LIGHT = np.array([-0.4, 0.6, -1.0]) / np.linalg.norm([-0.4, 0.6, -1.0])  # camera frame: right, up, forward
DEFAULT_COLOUR = (0.72, 0.72, 0.72)
# candidate pixels handled at once: bounds the memory of one view at about 0.5 GB for any mesh size
CHUNK = 4_000_000
NEIGHBOUR = 4  # the splat radius follows the distance to this nearest neighbour...
RADIUS_SCALE = 0.6  # ... times this: holes against overhang (docs/pretrain_sets.md)
MAX_SPLAT_PIXELS = 16  # a splat's radius in pixels at most (an isolated outlier would cover the image)


@dataclass(frozen=True)
class Camera:
    azimuth: float
    elevation: float
    distance: float = 4.9
    fov: float = 25.0
    size: int = 137

    @property
    def focal(self) -> float:
        return (self.size / 2) / math.tan(math.radians(self.fov) / 2)

    def frame(self) -> tuple[np.ndarray, np.ndarray]:
        """The camera's position and its axes as rows (right, up, forward), in world coordinates (y up)."""
        az, el = math.radians(self.azimuth), math.radians(self.elevation)
        forward = -np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
        horizontal = math.hypot(forward[0], forward[2])
        if horizontal < 1e-9:
            raise ValueError(f"elevation {self.elevation} looks straight along the up axis; use |elevation| < 90")
        right = np.array([-forward[2], 0.0, forward[0]]) / horizontal
        up = np.cross(right, forward)
        return -self.distance * forward, np.stack([right, up, forward])

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixel coordinates x (columns), y (rows) and depth along the view axis of (n, 3) points."""
        eye, axes = self.frame()
        local = (np.asarray(points, dtype=np.float64) - eye) @ axes.T
        depth = local[:, 2]
        if len(depth) and depth.min() <= 1e-6:
            raise ValueError(f"camera at distance {self.distance} is inside the shape (depth {depth.min():.3g}); "
                             "shapes are expected in the unit sphere")
        x = self.size / 2 + self.focal * local[:, 0] / depth
        y = self.size / 2 - self.focal * local[:, 1] / depth
        return x, y, depth

    def light(self) -> np.ndarray:
        """The light direction in world coordinates."""
        return LIGHT @ self.frame()[1]


def orbit(views: int, elevations=(15.0, 30.0, 45.0), distance: float = 4.9, fov: float = 25.0,
          size: int = 137) -> list[Camera]:
    """`views` cameras evenly spaced in azimuth (360 / views apart, from 0), cycling through `elevations`."""
    return [Camera(360.0 * v / views, float(elevations[v % len(elevations)]), distance, fov, size)
            for v in range(views)]


def _rgba(size: int, covered: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    image = np.zeros((size * size, 4), dtype=np.uint8)
    image[covered, :3] = np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)
    image[covered, 3] = 255
    return image.reshape(size, size, 4)


def _colour_rows(colours, count: int) -> np.ndarray:
    """Per-item colours (count, 3) from one RGB triple or an array of them, in [0, 1]."""
    colours = np.asarray(DEFAULT_COLOUR if colours is None else colours, dtype=np.float64)
    return np.broadcast_to(colours, (count, 3)) if colours.ndim == 1 else colours


def render_mesh(vertices: np.ndarray, faces: np.ndarray, camera: Camera, colours=None) -> np.ndarray:
    """RGBA view of a triangle mesh; `colours`: one RGB in [0, 1] for the whole mesh, or one per vertex
    (interpolated over each triangle)."""
    size = camera.size
    x, y, depth = camera.project(vertices)
    faces = np.asarray(faces, dtype=np.int64)
    fx, fy, inverse = x[faces], y[faces], 1.0 / depth[faces]
    # the pixel centres j + 0.5 inside each triangle's bounding box, clipped to the image (np.minimum of the
    # columns: 3x faster than .min(axis=1) on (m, 3))
    xs, ys = fx.T, fy.T
    x0 = np.maximum(np.ceil(np.minimum(np.minimum(xs[0], xs[1]), xs[2]) - 0.5), 0).astype(np.int64)
    x1 = np.minimum(np.floor(np.maximum(np.maximum(xs[0], xs[1]), xs[2]) - 0.5), size - 1).astype(np.int64)
    y0 = np.maximum(np.ceil(np.minimum(np.minimum(ys[0], ys[1]), ys[2]) - 0.5), 0).astype(np.int64)
    y1 = np.minimum(np.floor(np.maximum(np.maximum(ys[0], ys[1]), ys[2]) - 0.5), size - 1).astype(np.int64)
    width, height = x1 - x0 + 1, y1 - y0 + 1
    keep = np.flatnonzero((width > 0) & (height > 0))
    fx, fy, inverse = fx[keep], fy[keep], inverse[keep]
    area = (fx[:, 1] - fx[:, 0]) * (fy[:, 2] - fy[:, 0]) - (fx[:, 2] - fx[:, 0]) * (fy[:, 1] - fy[:, 0])
    flat = np.abs(area) > 1e-12  # seen edge-on: no pixel centre strictly inside
    keep, fx, fy, inverse, area = keep[flat], fx[flat], fy[flat], inverse[flat], area[flat]
    # barycentric coordinates as affine functions of the pixel centre: b_k = a_k x + c_k y + d_k
    nxt, prv = [1, 2, 0], [2, 0, 1]
    a = (fy[:, nxt] - fy[:, prv]) / area[:, None]
    c = (fx[:, prv] - fx[:, nxt]) / area[:, None]
    d = (fx[:, nxt] * fy[:, prv] - fx[:, prv] * fy[:, nxt]) / area[:, None]
    width, x0, y0 = width[keep], x0[keep], y0[keep]
    counts = width * height[keep]
    best = np.full(size * size, -np.inf)
    owner = np.full(size * size, -1, dtype=np.int64)        # index into keep of the nearest triangle
    weights = np.zeros((size * size, 2))                      # its first two barycentric coordinates
    first = np.cumsum(counts) - counts                     # each triangle's first candidate
    start = 0
    while start < len(keep):
        stop = max(int(np.searchsorted(first, first[start] + CHUNK, side="left")), start + 1)
        tri = np.repeat(np.arange(start, stop), counts[start:stop])
        offset = np.arange(len(tri)) - np.repeat(first[start:stop] - first[start], counts[start:stop])
        px, py = x0[tri] + offset % width[tri], y0[tri] + offset // width[tri]
        cx, cy = px + 0.5, py + 0.5
        b0 = a[tri, 0] * cx + c[tri, 0] * cy + d[tri, 0]
        b1 = a[tri, 1] * cx + c[tri, 1] * cy + d[tri, 1]
        b2 = 1.0 - b0 - b1
        inside = np.flatnonzero((b0 >= -1e-9) & (b1 >= -1e-9) & (b2 >= -1e-9))
        tri, b0, b1, b2 = tri[inside], b0[inside], b1[inside], b2[inside]
        pixel = py[inside] * size + px[inside]
        near = b0 * inverse[tri, 0] + b1 * inverse[tri, 1] + b2 * inverse[tri, 2]
        chunk_best = np.full(size * size, -np.inf)
        np.maximum.at(chunk_best, pixel, near)
        win = np.flatnonzero((near == chunk_best[pixel]) & (near > best[pixel]))
        best[pixel[win]] = near[win]
        owner[pixel[win]] = tri[win]
        weights[pixel[win]] = np.stack([b0[win], b1[win]], axis=1)
        start = stop
    covered = np.flatnonzero(owner >= 0)
    hit = keep[owner[covered]]
    corners = np.asarray(vertices, dtype=np.float64)[faces[hit]]
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-300)
    shade = AMBIENT + (1 - AMBIENT) * np.abs(normal @ camera.light())
    rows, b = _colour_rows(colours, len(vertices)), weights[covered]
    rgb = (b[:, :1] * rows[faces[hit, 0]] + b[:, 1:] * rows[faces[hit, 1]]
           + (1 - b.sum(axis=1, keepdims=True)) * rows[faces[hit, 2]])
    return _rgba(size, covered, rgb * shade[:, None])


def splat_radii(points: np.ndarray) -> np.ndarray:
    """Each point's splat radius in world units: RADIUS_SCALE x the distance to its NEIGHBOUR-th nearest
    neighbour, kept within [0.5, 2] x the median so that a clump or an outlier does not become a dot or a blot."""
    from scipy.spatial import cKDTree

    points = np.asarray(points, dtype=np.float64)
    k = min(NEIGHBOUR, len(points) - 1)
    if k < 1:
        return np.full(len(points), 0.02)
    distance = cKDTree(points).query(points, k=k + 1)[0][:, k]
    median = float(np.median(distance))
    if median <= 0:
        median = float(distance.max()) or 0.02
    return RADIUS_SCALE * np.clip(distance, 0.5 * median, 2.0 * median)


def _stamp(radius: float, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The pixels of a disc of `radius` pixels around a pixel centre, as offsets into a flat image of `width`
    columns, and how far in front of its centre a sphere of that radius is at each (as a fraction of it)."""
    reach = int(math.ceil(radius))
    dy, dx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    gap2 = (dx * dx + dy * dy).ravel() / radius ** 2
    inside = gap2 <= 1
    return (dy.ravel() * width + dx.ravel())[inside], np.sqrt(1 - gap2[inside])


def render_splats(points: np.ndarray, radii: np.ndarray, camera: Camera, colours=None) -> np.ndarray:
    """RGBA view of a point cloud as depth-shaded splats of world radius `radii` (see `splat_radii`);
    `colours`: one RGB in [0, 1] for the whole cloud, or one per point. A splat is the disc of pixels around
    the pixel its point falls in, its radius rounded to half a pixel (a stamp per radius, no per-pixel test)."""
    size = camera.size
    x, y, depth = camera.project(points)
    radii = np.asarray(radii, dtype=np.float64)
    pixels = np.clip(np.rint(2 * camera.focal * radii / depth) / 2, 0.5, MAX_SPLAT_PIXELS)
    pad = MAX_SPLAT_PIXELS + 1  # a frame around the image that every stamp fits in: no bounds checks
    width = size + 2 * pad
    column = np.clip(np.floor(x), -pad, size + pad - 1).astype(np.int64) + pad
    row = np.clip(np.floor(y), -pad, size + pad - 1).astype(np.int64) + pad
    centre = row * width + column
    nearest = np.full(width * width, np.inf)
    groups = []
    for radius in np.unique(pixels):
        chosen = np.flatnonzero(pixels == radius)
        offsets, bulge = _stamp(float(radius), width)
        pixel = (centre[chosen, None] + offsets).ravel()
        front = (depth[chosen, None] - radii[chosen, None] * bulge).ravel()
        np.minimum.at(nearest, pixel, front)
        groups.append((np.repeat(chosen, len(offsets)), pixel, front))
    owner = np.full(width * width, -1, dtype=np.int64)
    for point, pixel, front in groups:
        win = front == nearest[pixel]
        owner[pixel[win]] = point[win]
    owner = owner.reshape(width, width)[pad:pad + size, pad:pad + size].ravel()
    front = nearest.reshape(width, width)[pad:pad + size, pad:pad + size].ravel()
    covered = np.flatnonzero(owner >= 0)
    near, far = depth.min() - radii.max(), depth.max()
    shade = 1.0 - (1 - AMBIENT) * (front[covered] - near) / max(far - near, 1e-12)
    rgb = _colour_rows(colours, len(points))[owner[covered]]
    return _rgba(size, covered, rgb * shade[:, None])
