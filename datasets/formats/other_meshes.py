"""STL and glTF binary (.glb) through trimesh, the formats this repo has no reader of its own for.

A glTF scene is flattened into one mesh (its nodes' transforms applied); a glTF that holds only points is a
point set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from utils.errors import DataError

from .shape import Shape


def read_with_trimesh(path: str | Path) -> Shape:
    import trimesh

    path = Path(path)
    try:
        loaded = trimesh.load(str(path))
        if isinstance(loaded, trimesh.Scene):
            geometry = loaded.to_geometry() if hasattr(loaded, "to_geometry") else loaded.dump(concatenate=True)
        else:
            geometry = loaded
    except Exception as error:  # trimesh raises many kinds for bad or foreign bytes
        message = " ".join(str(error).split()) or type(error).__name__
        raise DataError(f"{path}: cannot read mesh ({type(error).__name__}: {message})") from None
    vertices = np.asarray(getattr(geometry, "vertices", np.zeros((0, 3))), dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(getattr(geometry, "faces", np.zeros((0, 3))), dtype=np.int64).reshape(-1, 3)
    if not np.isfinite(vertices).all():
        raise DataError(f"{path}: NaN/Inf vertex coordinates")
    return Shape(vertices, faces if len(faces) else None)
