"""Checkpoint files: atomic writes and safe reads. What a checkpoint's tensors mean is models/layouts.py's job."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from utils.errors import CheckpointError
from utils.files import atomic_write


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save through `utils.files.atomic_write`: `path` holds the old file or the whole new one."""
    atomic_write(path, lambda file: torch.save(obj, file))


def load_checkpoint_file(path: str | os.PathLike) -> dict:
    """torch.load(path, map_location="cpu", weights_only=True) of a file that must hold a dict.

    A missing, unreadable, truncated or non-torch file, or one that pickles Python objects other than
    tensors and plain containers (refused, never executed), raises CheckpointError naming the file and cause.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        message = str(error)
        if "Weights only load failed" in message:
            found = re.search(r"GLOBAL (\S+)", message)
            what = f" ({found.group(1)})" if found else ""
            raise CheckpointError(f"{path}: refused: it pickles Python objects other than tensors{what}; only "
                                  f"weights are loaded (weights_only=True), never code") from None
        raise CheckpointError(f"{path}: not a torch checkpoint ({_first_line(message)})") from None
    except EOFError:
        raise CheckpointError(f"{path}: empty or truncated file") from None
    except OSError as error:
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
    return obj


def _first_line(message: str, limit: int = 160) -> str:
    line = message.strip().splitlines()[0] if message.strip() else "no detail"
    return line if len(line) <= limit else line[:limit] + "..."
