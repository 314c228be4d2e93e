"""File writers: h5, PLY, PNG and list files, all byte-deterministic for the same arrays."""

from __future__ import annotations

import struct
import zlib

import h5py
import numpy as np
from plyfile import PlyData, PlyElement


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
    format is plain PNG, so Pillow (and everything else) reads it. datasets/formats/png.py is the same encoder
    for the repository; this package imports nothing from it, as it also runs as a plain script."""
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


def write_split(folder, split, n_files, list_name, list_prefix, **arrays):
    """One split of an h5 dataset: the rows spread over `n_files` files `ply_data_<split><i>.h5` and the list
    file `list_name` naming them, each with `list_prefix` in front (the real archives differ in this)."""
    listed = []
    for index, rows in enumerate(split_files(len(next(iter(arrays.values()))), n_files)):
        write_h5(folder / f"ply_data_{split}{index}.h5", **{key: value[rows] for key, value in arrays.items()})
        listed.append(f"{list_prefix}ply_data_{split}{index}.h5")
    write_lines(folder / list_name, listed)
