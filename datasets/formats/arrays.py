"""Clouds stored as arrays: numpy files and text tables.

* `.npy`, `.npz`: one `(n, 3+)` numeric array (an npz holding several must call it `points`), read without
  pickle; columns 3:6, when present, are colours (0..255 when any exceeds 1, else 0..1);
* `.xyz`, `.txt`, `.pts`, `.csv`: whitespace-, comma- or semicolon-separated rows, the first three columns xyz
  and columns 3:6 colours as above; leading lines that are not rows of numbers (a header, a point count) are
  skipped, and so are `#` comments.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from utils.errors import DataError

from .shape import Shape, colour_scale, read_bytes

HEADER_LINES = 10  # leading non-numeric lines skipped in a text file, at most


def read_array(path: str | Path) -> Shape:
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            loaded = np.load(stream, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                with loaded:
                    keys = loaded.files
                    if len(keys) != 1 and "points" not in keys:
                        raise DataError(f"{path}: npz holds {', '.join(keys) or 'no arrays'}; name the cloud "
                                        "'points' (or store only it)")
                    array = loaded["points" if "points" in keys else keys[0]]
            else:
                array = loaded
    except DataError:
        raise
    except ValueError as error:
        raise DataError(f"{path}: cannot read ({_oneline(error)}; object arrays are not loaded)") from None
    except Exception as error:  # truncated or foreign bytes: OSError, EOFError, zipfile.BadZipFile, ...
        raise DataError(f"{path}: cannot read ({type(error).__name__}: {_oneline(error)})") from None
    if array.ndim != 2 or array.shape[1] < 3 or array.dtype.kind not in "fiu":
        raise DataError(f"{path}: expected an (N, 3+) numeric array, got {array.shape} {array.dtype}")
    return _table_shape(path, array)


def read_text(path: str | Path) -> Shape:
    path = Path(path)
    lines = read_bytes(path).replace(b",", b" ").replace(b";", b" ").splitlines()
    start = 0
    for start, line in enumerate(lines[:HEADER_LINES]):
        words = line.split(b"#", 1)[0].split()
        try:
            if len(words) >= 3:
                [float(word) for word in words[:3]]
                break
        except ValueError:
            continue
    else:
        raise DataError(f"{path}: no row of three numbers in its first {HEADER_LINES} lines")
    try:
        table = np.loadtxt(io.BytesIO(b"\n".join(lines[start:])), dtype=np.float64, comments="#", ndmin=2)
    except ValueError as error:
        raise DataError(f"{path}: malformed rows ({_oneline(error)})") from None
    if table.shape[1] < 3:
        raise DataError(f"{path}: rows have {table.shape[1]} columns, need at least 3 (x y z)")
    return _table_shape(path, table)


def _table_shape(path: Path, table: np.ndarray) -> Shape:
    xyz = np.asarray(table[:, :3], dtype=np.float64)
    if not np.isfinite(xyz).all():
        raise DataError(f"{path}: NaN/Inf coordinates")
    colours = None
    if table.shape[1] >= 6:
        columns = np.asarray(table[:, 3:6], dtype=np.float64)
        if not np.isfinite(columns).all():
            raise DataError(f"{path}: NaN/Inf in the colour columns 4-6")
        colours = colour_scale(columns, integer=False)
    return Shape(xyz, None, colours)


def _oneline(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
