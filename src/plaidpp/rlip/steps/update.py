"""Step 4: pi_{i-1} -> pi_i, by DPO against pi_ref (pi_{i-1}, or the fixed pi_0 ablation), or by the
iterative-SFT baseline (fine-tuning on the accepted samples)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plaidpp.rlip.layout import Layout
from plaidpp.settings.stages import RlipConfig

READS = ("model", "dpo", "pairs", "iterative_sft", "rlip.reference", "rlip.algorithm")


def paths(cfg: RlipConfig, layout: Layout, i: int) -> tuple[list[Path], list[Path]]:
    source = layout.iter_dir(i) / ("pairs.jsonl" if cfg.rlip.algorithm == "dpo" else "reward")
    inputs = list(dict.fromkeys([layout.model(i - 1), layout.reference(i, cfg.rlip.reference), source]))
    return inputs, [layout.model(i), layout.marker(i, "update")]


def run(cfg: RlipConfig, layout: Layout, i: int) -> dict[str, Any]:
    seed = layout.seed(i, "update")
    if cfg.rlip.algorithm == "dpo":
        from plaidpp.training.dpo import train_dpo

        summary = train_dpo(layout.model(i - 1), layout.reference(i, cfg.rlip.reference),
                            layout.iter_dir(i) / "pairs.jsonl", layout.model(i), cfg.model, cfg.dpo, seed)
        summary.pop("log_history", None)  # kept in the model dir's dpo_summary.json
        return summary
    from plaidpp.rlip.iterative_sft import train_on_accepted

    return train_on_accepted(layout.model(i - 1), layout.iter_dir(i) / "reward" / "structures.parquet",
                             layout.model(i), cfg, seed)
