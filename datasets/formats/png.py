"""An 8-bit RGBA PNG encoder (the reader is torchvision's decode_png, in datasets.shapenet_render)."""

from __future__ import annotations

import struct
import zlib

import numpy as np


def encode_png(rgba: np.ndarray) -> bytes:
    """The bytes of an (H, W, 4) uint8 image as a PNG: filter 'none', zlib level 1. Twice as fast as Pillow's
    encoder, whose adaptive row filters cost more than they save on mostly transparent renders; plain PNG, so
    Pillow, torchvision and everything else read it. The same array always gives the same bytes."""
    rgba = np.asarray(rgba)
    if rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"expected an (H, W, 4) uint8 image, got {rgba.shape} {rgba.dtype}")
    height, width, _ = rgba.shape
    rows = np.zeros((height, width * 4 + 1), dtype=np.uint8)  # each scanline starts with filter type 0
    rows[:, 1:] = rgba.reshape(height, width * 4)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8 bits, colour type 6 = RGBA
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 1))
            + chunk(b"IEND", b""))
