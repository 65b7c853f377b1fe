"""On-disk cache of relaxation results, keyed by structure + potential + relaxation settings.

A sqlite file under ``cfg.paths.cache`` (``relax-cache.sqlite``): one row per key, written by the parent
process only (workers return results), committed after every row, so a run killed half-way keeps what it
finished and a re-run (or the next RL iteration) never relaxes the same crystal twice.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

KEY_DECIMALS = 4  # Å for the lattice, fractional units for coordinates


def structure_hash(structure: Structure) -> str:
    """sha256 of the lattice matrix and the sorted (species, wrapped fractional coords), rounded.

    Two decodings of the same text give the same key; a different site order gives the same key; a
    symmetrically equivalent but differently placed crystal does not (that is what StructureMatcher is for).
    """
    frac = np.mod(np.round(structure.frac_coords, KEY_DECIMALS), 1.0)
    frac = np.where(np.isclose(frac, 1.0), 0.0, frac)
    sites = sorted(
        (site.specie.symbol if hasattr(site.specie, "symbol") else str(site.specie), *np.round(f, KEY_DECIMALS))
        for site, f in zip(structure, frac, strict=True)
    )
    payload = {
        "lattice": np.round(structure.lattice.matrix, KEY_DECIMALS).tolist(),
        "sites": [[s[0], *[float(x) + 0.0 for x in s[1:]]] for s in sites],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class RelaxCache:
    """``get(key) -> dict | None`` and ``put(key, dict)`` over a sqlite table; ``None`` path = in memory."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path) if self.path else ":memory:", timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")  # readers (another run) don't block the writer
        self._db.execute("CREATE TABLE IF NOT EXISTS relax (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.commit()

    @staticmethod
    def key(structure: Structure, *tags: str) -> str:
        return hashlib.sha256("|".join([structure_hash(structure), *tags]).encode()).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT value FROM relax WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._db.execute("INSERT OR REPLACE INTO relax (key, value) VALUES (?, ?)", (key, json.dumps(value)))
        self._db.commit()

    def absorb(self, other: str | Path) -> int:
        """Copy every row of another cache file that this one lacks (a shard's, ``evaluation.shards``); returns
        how many were new. A key names the structure, potential and settings, so a row present in both is the
        same relaxation."""
        before = len(self)
        self._db.execute("ATTACH DATABASE ? AS other", (str(other),))
        try:
            self._db.execute("INSERT OR IGNORE INTO relax (key, value) SELECT key, value FROM other.relax")
            self._db.commit()
        finally:
            self._db.execute("DETACH DATABASE other")
        return len(self) - before

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM relax").fetchone()[0])

    def close(self) -> None:
        self._db.close()
