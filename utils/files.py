"""Atomic files: every file a run writes (checkpoints, metrics.json, config.yaml) goes through `atomic_write`.

A crash or signal at any point leaves either the previous file or the complete new one, never a partial
file; the temporary file is removed on every path out, exceptions included.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping

TEMP_SUFFIX = ".tmp"


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(file)` on a temporary file in `path`'s folder, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda file: file.write(text.encode()))


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(data: Any, path: str | os.PathLike) -> None:
    """Atomically, with NaN and Inf written as null (strict JSON)."""
    atomic_write_text(path, json.dumps(_finite(data), indent=2))


def read_json(path: str | os.PathLike) -> dict:
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else {}


def update_json(path: str | os.PathLike, entries: Mapping[str, Any]) -> dict:
    """Merge `entries` into the JSON object at `path` (created when absent) and write it back atomically."""
    data = read_json(path)
    data.update(entries)
    write_json(data, path)
    return data
