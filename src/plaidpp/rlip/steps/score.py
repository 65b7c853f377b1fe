"""Step 2: every kept rollout scored with the *reward* potential, exactly as ``plaidpp evaluate`` would."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from plaidpp.evaluation.evaluate import score_to_dir
from plaidpp.rlip.layout import Layout
from plaidpp.rlip.roles import role_config
from plaidpp.sampling.generate import final_rows
from plaidpp.settings.stages import RlipConfig

READS = ("reward",)
ROLE = "reward"


def paths(cfg: RlipConfig, layout: Layout, i: int) -> tuple[list[Path], list[Path]]:
    return [layout.iter_dir(i) / "samples.jsonl"], [layout.iter_dir(i) / "reward", layout.marker(i, "score")]


def score_file(samples: Path, out_dir: Path, cfg: RlipConfig, role: str, at_most: int | None = None) -> dict[str, Any]:
    """The kept rows of a samples file scored with ``role``'s potential into ``out_dir`` (also the evaluation
    and audit steps' scorer). ``at_most`` keeps that many rows, evenly spaced over the file, so every prompt of
    the file stays represented in proportion."""
    eval_cfg = dataclasses.replace(role_config(cfg, role), samples=str(samples), out=str(out_dir))
    rows = final_rows(samples)
    if at_most is not None and at_most < len(rows):
        step = len(rows) / at_most
        rows = [rows[int(k * step)] for k in range(at_most)]
    _, summary = score_to_dir(rows, eval_cfg, out_dir, samples)
    return summary


def run(cfg: RlipConfig, layout: Layout, i: int) -> dict[str, Any]:
    return score_file(layout.iter_dir(i) / "samples.jsonl", layout.iter_dir(i) / "reward", cfg, ROLE)
