"""From primitives to point clouds: area-weighted surface sampling, unit-sphere normalisation, fixed-size
subsets, and the independent random streams every object draws from."""

from __future__ import annotations

import numpy as np

from .families import make_shape

POINTS_PER_OBJECT = 2048

# one tag per dataset, mixed into every random stream so that datasets never share draws
TAG_MODELNET, TAG_SCANOBJECTNN, TAG_PART, TAG_S3DIS, TAG_RENDER = 1, 2, 3, 4, 5
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def stream(seed, *keys):
    """An independent random stream for (seed, dataset, ...): draws never depend on other datasets or on
    how many objects came before."""
    return np.random.default_rng([seed, *keys])


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


def sample_object(family, rng, n=POINTS_PER_OBJECT, noise=0.004):
    """Points (n,3) float32 on the unit sphere, normals (n,3) float32, part ids (n,)."""
    points, normals, part_ids, _ = sample_parts(make_shape(family, rng), n, rng)
    points = normalise_unit_sphere(points) + rng.normal(0, noise, points.shape)
    return normalise_unit_sphere(points).astype(np.float32), normals.astype(np.float32), part_ids
