"""Step 5: a fresh sample from pi_i (iteration 0: pi_0) scored with the *evaluation* potential."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plaidpp.rlip.layout import Layout
from plaidpp.rlip.steps.sample import sample_from
from plaidpp.rlip.steps.score import score_file
from plaidpp.settings.stages import RlipConfig

READS = ("repr", "model", "sampler", "evaluation", "schedule")
ROLE = "evaluation"


def paths(cfg: RlipConfig, layout: Layout, i: int) -> tuple[list[Path], list[Path]]:
    return [layout.model(i)], [layout.iter_dir(i) / "eval", layout.marker(i, "evaluate")]


def temperature(cfg: RlipConfig, i: int) -> float:
    """``evaluation.temperature``, fixed so iterations compare; null = the iteration's schedule temperature."""
    fixed = cfg.evaluation.temperature
    return fixed if fixed is not None else cfg.schedule.temperature(max(i, 1))


def run(cfg: RlipConfig, layout: Layout, i: int) -> dict[str, Any]:
    """Every iteration draws its prompts with iteration 0's seed: slot k of pi_i and of pi_0 answer the same
    prompt from the same random start, so ``vs_sft`` is a paired comparison (``compare.is_paired``)."""
    out = layout.iter_dir(i) / "eval"
    sampled = sample_from(layout.model(i), out / "samples.jsonl", cfg, temperature(cfg, i),
                          cfg.evaluation.prompts_for(i, cfg.rlip.iterations), layout.seed(0, "evaluate"))
    return {"sampling": sampled, **score_file(out / "samples.jsonl", out, cfg, ROLE)}
