"""A small point-splat renderer for the ShapeNetRendering views."""

from __future__ import annotations

import math

import numpy as np

IMAGE_SIZE = 137
FIELD_OF_VIEW = 25.0  # degrees, the value in the real rendering_metadata.txt


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
