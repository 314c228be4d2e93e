"""Datasets: ShapeNetRender (pretraining) and the downstream h5 datasets. See DEVELOPING.md for item keys.

The classes are re-exported lazily, so that importing a light submodule (``datasets.splits``,
``datasets.transforms``) does not pull in torchvision, h5py and plyfile.
"""

import importlib

_EXPORTS = {
    "ModelNet40": ".modelnet40",
    "S3DIS": ".s3dis",
    "ScanObjectNN": ".scanobjectnn",
    "ShapeNetPart": ".shapenet_part",
    "ShapeNetRender": ".shapenet_render",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
