"""Small file helpers shared by the stages."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any, default: Callable[[Any], Any] | None = None) -> None:
    """Write JSON (indented, trailing newline) via a temp file and rename, so a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=default) + "\n")
    os.replace(tmp, path)
