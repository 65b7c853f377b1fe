"""Small file helpers shared by the stages: every whole file or folder is written under a temporary name and
renamed, so a kill never leaves half of one; a lock keeps two processes off one output."""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from plaidpp.errors import UserError


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def write_json(path: str | os.PathLike, data: Any, default: Callable[[Any], Any] | None = _json_default) -> None:
    """Write JSON (indented, trailing newline) via a temp file and rename."""
    write_text(path, json.dumps(data, indent=2, default=default) + "\n")


def numbers_only(data: Any) -> Any:
    """What a DVC metrics file keeps of ``data``: numbers (bools as 0/1), nested dicts of them, and each
    ``<rate>_ci95`` pair as ``{"low", "high"}``. Strings, None and other lists are dropped: they belong in the
    stage's summary, and one long string makes `dvc metrics show` a line thousands of characters wide."""
    if isinstance(data, np.generic):  # numpy scalars
        data = data.item()
    if isinstance(data, bool):
        return int(data)
    if isinstance(data, (int, float)):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if str(key).endswith("_ci95") and isinstance(value, (list, tuple)) and len(value) == 2:
                value = {"low": value[0], "high": value[1]}
            kept = numbers_only(value)
            if kept not in (None, {}):
                out[str(key)] = kept
        return out
    return None


def write_metrics(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """A DVC metrics file: ``numbers_only(data)`` as JSON."""
    write_json(path, numbers_only(data))


def write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` a sibling temp file, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def replace_dir(tmp: str | os.PathLike, out: str | os.PathLike) -> None:
    """Move a finished folder ``tmp`` onto ``out`` (a model directory, say), replacing what was there."""
    tmp, out = Path(tmp), Path(out)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


@contextmanager
def exclusive(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` for the block; another holder makes this a one-line error.

    The lock dies with its process (flock), so a killed run never leaves a stale lock behind; a finished one
    removes the file.
    """
    lock = Path(f"{path}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{path} is being written by another process ({what}); wait for it or choose "
                            "another output") from None
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)
