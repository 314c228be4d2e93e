"""ShapeNetRender (pretraining): ShapeNet/<synset>/<id>.ply and the rendered views of the same shape."""

from __future__ import annotations

import numpy as np

from .families import DEFAULT_COLOURS, FAMILY_COLOURS, make_shape
from .primitives import U
from .render import FIELD_OF_VIEW, render_view
from .sampling import TAG_RENDER, sample_parts, stream, total_area
from .writers import write_lines, write_ply, write_png

# the 13 ShapeNetRender (3D-R2N2) synsets
SHAPENET_RENDER_FAMILIES = {
    "02691156": "airplane", "02828884": "bench", "02933112": "cabinet", "02958343": "car",
    "03001627": "chair", "03211117": "monitor", "03636649": "lamp", "03691459": "loudspeaker",
    "04090263": "rifle", "04256520": "sofa", "04379243": "table", "04401088": "telephone",
    "04530566": "watercraft"}

VIEWS = 24
RENDER_DISTANCE_SCALE = 3.3  # camera distance = distance ratio x this, in .ply units (bbox diagonal 1)


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
