"""Point clouds drawn as PNG thumbnails (matplotlib's Agg canvas directly: no pyplot, no global backend)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from utils.files import atomic_write


def label_colours(count: int) -> np.ndarray:
    """`count` distinct RGB colours in [0, 1] (tab20, then evenly spaced hues beyond 20)."""
    from matplotlib import colormaps

    if count <= 20:
        return np.asarray([colormaps["tab20" if count > 10 else "tab10"](i)[:3] for i in range(count)])
    return np.asarray([colormaps["hsv"](i / count)[:3] for i in range(count)])


def draw_clouds(path: str | Path, clouds: Sequence[np.ndarray | None], titles: Sequence[str],
                colours: Sequence[np.ndarray | None] | None = None, legend: dict[str, np.ndarray] | None = None,
                columns: int = 6, size: float = 2.6, point_size: float = 2.0) -> None:
    """One 3-D scatter per cloud `(n, 3)` (y up, as ShapeNet / ModelNet40), a title under each; a None cloud
    is an empty panel (e.g. a file that could not be read). `colours`: per-point RGB (n, 3) or None (grey by
    height). `legend`: name -> RGB drawn once below the panels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    columns = max(1, min(columns, len(clouds)))
    rows = math.ceil(len(clouds) / columns)
    fig = Figure(figsize=(size * columns, size * rows + (0.5 if legend else 0)), dpi=100)
    FigureCanvasAgg(fig)
    for i, (cloud, title) in enumerate(zip(clouds, titles)):
        ax = fig.add_subplot(rows, columns, i + 1, projection="3d")
        ax.set_axis_off()
        ax.set_title(title, fontsize=7, y=-0.08)
        if cloud is None or len(cloud) == 0:
            continue
        cloud = np.asarray(cloud, dtype=np.float32)
        colour = colours[i] if colours is not None else None
        shown = np.linspace(0, len(cloud) - 1, min(len(cloud), 8192)).astype(np.int64)  # enough for a thumbnail
        c = colour[shown] if colour is not None else cloud[shown, 1]
        # matplotlib's z is up: draw (x, z, y) so that a y-up cloud stands upright
        ax.scatter(cloud[shown, 0], cloud[shown, 2], cloud[shown, 1], c=c, s=point_size, linewidths=0,
                   cmap=None if colour is not None else "Greys_r", depthshade=False)
        low, high = cloud.min(0), cloud.max(0)
        centre, half = (low + high) / 2, float((high - low).max()) / 2 or 1.0
        ax.set_xlim(centre[0] - half, centre[0] + half)
        ax.set_ylim(centre[2] - half, centre[2] + half)
        ax.set_zlim(centre[1] - half, centre[1] + half)
        ax.view_init(elev=20, azim=-60)
    if legend:
        fig.legend(handles=[Patch(color=rgb, label=name) for name, rgb in legend.items()], loc="lower center",
                   ncol=min(len(legend), 7), fontsize=7, frameon=False)
    atomic_write(path, lambda file: fig.savefig(file, format="png", bbox_inches="tight"))
