"""Step 1: K unconditional + M per target space group from pi_{i-1} at the schedule's temperature T_i."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plaidpp.rlip.layout import Layout
from plaidpp.sampling.generate import final_rows
from plaidpp.sampling.sample import plan_sampling, sample_model
from plaidpp.settings.sampling import PromptSet
from plaidpp.settings.stages import RlipConfig

READS = ("repr", "model", "sampler", "rollout", "schedule")


def paths(cfg: RlipConfig, layout: Layout, i: int) -> tuple[list[Path], list[Path]]:
    return [layout.model(i - 1)], [layout.iter_dir(i) / "samples.jsonl", layout.marker(i, "sample")]


def sample_from(model_dir: Path, out: Path, cfg: RlipConfig, temperature: float, prompts: PromptSet,
                seed: int) -> dict[str, Any]:
    """``prompts`` from the model in ``model_dir`` into ``out`` (also the evaluation step's sampler)."""
    plan = plan_sampling(model_dir, prompts, sampler=cfg.sampler, temperature=temperature, repr=cfg.repr, seed=seed,
                         out_path=out)
    stats, _ = sample_model(plan, cfg.model)
    finals = final_rows(out)
    return {"temperature": temperature, "seed": seed, "n_slots": len(finals),
            "final_parse_rate": sum(r["decoded"] for r in finals) / max(len(finals), 1), **stats.as_dict()}


def run(cfg: RlipConfig, layout: Layout, i: int) -> dict[str, Any]:
    return sample_from(layout.model(i - 1), layout.iter_dir(i) / "samples.jsonl", cfg, cfg.schedule.temperature(i),
                       cfg.rollout, layout.seed(i, "sample"))
