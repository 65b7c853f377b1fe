"""Step 3: preference pairs from the reward scores (``plaidpp.rlip.pairs``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from plaidpp.rlip.layout import Layout
from plaidpp.rlip.pairs import build_pairs, write_pairs
from plaidpp.settings.stages import RlipConfig

READS = ("pairs",)


def paths(cfg: RlipConfig, layout: Layout, i: int) -> tuple[list[Path], list[Path]]:
    return [layout.iter_dir(i) / "reward"], [layout.iter_dir(i) / "pairs.jsonl", layout.marker(i, "pairs")]


def run(cfg: RlipConfig, layout: Layout, i: int) -> dict[str, Any]:
    table = pd.read_parquet(layout.iter_dir(i) / "reward" / "structures.parquet")
    result = build_pairs(table, cfg.pairs, layout.seed(i, "pairs"))
    write_pairs(result, layout.iter_dir(i) / "pairs.jsonl")
    return result.summary()
