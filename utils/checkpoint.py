"""Checkpoint files: atomic writes and safe reads. What a checkpoint's tensors mean is models/layouts.py's job."""

from __future__ import annotations

import errno
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from utils.errors import CheckpointError, NonFiniteError
from utils.files import atomic_write, describe_os_error

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since torch 1.6
PICKLE_PROTO = b"\x80"  # torch.save's legacy format starts with a pickle protocol opcode


class _RecordingWriter:
    """A file that remembers the OSError of a failed write: torch's zip writer swallows it and raises a
    RuntimeError ("unexpected pos ...") that says nothing of the cause (a full disk, say)."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise

    def __getattr__(self, name):
        return getattr(self.file, name)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save through `utils.files.atomic_write`: `path` holds the old file or the whole new one; a failed
    write is an OutputError naming `path` and the cause."""
    def write(file):
        recorder = _RecordingWriter(file)
        try:
            torch.save(obj, recorder)
        except RuntimeError:
            if recorder.error is not None:
                raise recorder.error from None
            raise

    atomic_write(path, write)


def load_checkpoint_file(path: str | os.PathLike) -> dict:
    """torch.load(path, map_location="cpu", weights_only=True) of a file that must hold a dict.

    A missing, unreadable, truncated or non-torch file, or one that pickles Python objects other than
    tensors and plain containers (refused, never executed), raises CheckpointError naming the file and cause;
    a tensor holding NaN or Inf raises NonFiniteError naming the file and the tensor.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    try:
        with open(path, "rb") as file:
            head = file.read(8)
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read ({describe_os_error(error)})") from None
    if not head:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    if not (head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_PROTO)):
        looks = " (it looks like text or JSON)" if head.lstrip()[:1] in (b"{", b"[", b"#") or head.isascii() \
            else ""
        raise CheckpointError(f"{path}: not a torch checkpoint: neither a torch zip archive nor a pickle{looks}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        message = str(error)
        found = re.search(r"GLOBAL (\S+)", message)
        if "Weights only load failed" in message and found:
            what = f" ({found.group(1)})"
            raise CheckpointError(f"{path}: refused: it pickles Python objects other than tensors{what}; only "
                                  f"weights are loaded (weights_only=True), never code") from None
        raise CheckpointError(f"{path}: not a torch checkpoint ({_first_line(message)})") from None
    except EOFError:
        raise CheckpointError(f"{path}: empty or truncated file") from None
    except OSError as error:
        if error.errno == errno.EINVAL:  # torch's zip reader seeking past the end of a cut-off archive
            raise CheckpointError(f"{path}: truncated or corrupted (not a complete torch zip archive)") from None
        raise CheckpointError(f"{path}: cannot read ({error.strerror or error})") from None
    except RuntimeError as error:
        message = str(error)
        if "central directory" in message or "zip archive" in message:
            raise CheckpointError(f"{path}: truncated or corrupted (not a complete torch zip archive)") from None
        raise CheckpointError(f"{path}: not a torch checkpoint ({_first_line(message)})") from None
    except Exception as error:  # noqa: BLE001 - torch raises KeyError, ValueError, ... for arbitrary bytes
        raise CheckpointError(f"{path}: not a torch checkpoint ({type(error).__name__}: "
                              f"{_first_line(str(error))})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, expected a dict (a state_dict or checkpoint)")
    bad = first_non_finite(obj)
    if bad is not None:
        raise NonFiniteError(f"{path}: tensor '{bad}' holds NaN or Inf values (a diverged or damaged checkpoint); "
                             "use an earlier checkpoint")
    return obj


def first_non_finite(obj: Any, prefix: str = "") -> str | None:
    """The dotted key of the first floating-point tensor in nested dicts / lists holding NaN or Inf, or None."""
    if isinstance(obj, torch.Tensor):
        finite = not obj.is_floating_point() and not obj.is_complex() or bool(torch.isfinite(obj).all())
        return None if finite else prefix.rstrip(".")
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for key, value in items:
        found = first_non_finite(value, f"{prefix}{key}.")
        if found is not None:
            return found
    return None


def _first_line(message: str, limit: int = 160) -> str:
    line = message.strip().splitlines()[0] if message.strip() else "no detail"
    return line if len(line) <= limit else line[:limit] + "..."
