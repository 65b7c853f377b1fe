"""The real Qwen2.5 tokenizer, vendored compressed in data/raw/tokenizers/qwen2.5 (Apache-2.0).

transformers wants plain files in a directory, so they are unpacked once into the cache folder.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

from plaidpp.config import PROJECT_ROOT

VENDORED = PROJECT_ROOT / "data" / "raw" / "tokenizers" / "qwen2.5"


def qwen_tokenizer_dir(source: Path = VENDORED, cache: Path | None = None) -> Path:
    """A directory AutoTokenizer.from_pretrained can read, unpacked from the vendored files."""
    cache = Path(cache or PROJECT_ROOT / ".cache" / "tokenizers" / "qwen2.5")
    if (cache / "vocab.json").exists() and (cache / "merges.txt").exists():
        return cache
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "tokenizer_config.json", cache / "tokenizer_config.json")
    for name in ("vocab.json", "merges.txt"):
        tmp = cache / f".{name}.tmp"
        with gzip.open(source / f"{name}.gz", "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, cache / name)  # atomic: a concurrent reader never sees half a file
    return cache


def load_qwen_tokenizer(source: Path = VENDORED):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(qwen_tokenizer_dir(source)))
