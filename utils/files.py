"""Atomic files: every file a run writes (checkpoints, metrics.json, config.yaml) goes through `atomic_write`.

A crash or signal at any point leaves either the previous file or the complete new one, never a partial
file; the temporary file is removed on every path out, exceptions included. The file gets the permissions the
umask gives a new file (0644 under umask 022, 0664 under a lab's 002), as `open` would.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping

from utils.errors import DataError, OutputError

TEMP_SUFFIX = ".tmp"
# `.<name>.<8 characters of mkstemp>.tmp`, the temporary files of atomic_write
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX))


def describe_os_error(error: OSError) -> str:
    return error.strerror or str(error) or type(error).__name__


def make_folder(folder: str | os.PathLike) -> Path:
    """mkdir -p, or an OutputError naming the folder and the cause (e.g. a parent that is a regular file)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{folder}: cannot create the folder (a file of that name, or of a parent's, exists)") \
            from None
    except OSError as error:
        raise OutputError(f"{folder}: cannot create the folder ({describe_os_error(error)})") from None
    return folder


def current_umask() -> int:
    """The process's umask, read without changing it where Linux says it (os.umask can only set it: setting and
    restoring it would briefly apply another umask to a file another thread creates meanwhile)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(file)` on a temporary file in `path`'s folder, fsync it, then rename it over `path`.

    An OSError on the way (disk full, read-only folder, ...) is an OutputError naming `path` and the cause;
    `path` then still holds its previous content.
    """
    path = Path(path)
    make_folder(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({describe_os_error(error)})") from None
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fchmod(file.fileno(), 0o666 & ~current_umask())  # mkstemp made it 0600
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(error, OSError):
            raise OutputError(f"{path}: cannot write ({describe_os_error(error)}); the previous file, if any, "
                              "is left as it was") from None
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


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that a killed atomic_write (SIGKILL, power loss) left in `folder`.

    Call it only where no other process writes into `folder` at the same time (a run's rank 0, at start).
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if _TEMP_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except FileNotFoundError:
                pass
    return removed


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
    """The JSON object in `path` ({} when there is no such file); a DataError naming the file when it cannot be
    read or holds something else (a truncated or hand-edited metrics.json)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as error:
        raise DataError(f"{path}: cannot read ({describe_os_error(error)})") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (byte {error.start}); not a JSON file this repo wrote") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error.msg} at line {error.lineno} column {error.colno}); "
                        "restore it or move it away") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: holds a JSON {type(data).__name__}, expected an object")
    return data


def update_json(path: str | os.PathLike, entries: Mapping[str, Any]) -> dict:
    """Merge `entries` into the JSON object at `path` (created when absent) and write it back atomically."""
    data = read_json(path)
    data.update(entries)
    write_json(data, path)
    return data
