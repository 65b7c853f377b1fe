"""``plaidpp sample``: the SFT (or any saved) generator's crystals for the paper's prompts.

One file holds every prompt's slots: first ``prompts.n_unconditional`` unconditional samples, then
``prompts.n_per_spacegroup`` for each space group in ``prompts.spacegroups`` (rows carry the requested group).
Re-running after a kill resumes the file (see ``generate``); a finished file is left as it is; a file written
with other settings is refused before the model is loaded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from plaidpp.errors import UserError
from plaidpp.io import write_metrics
from plaidpp.prompts import prompt_counts
from plaidpp.runtime import set_torch_threads
from plaidpp.sampling.generate import SamplingStats, check_resumable, generate, run_record, slot_prompts
from plaidpp.settings.model import ModelSettings
from plaidpp.settings.sampling import PromptSet, SamplerSettings
from plaidpp.settings.stages import SampleConfig
from plaidpp.tracking import flat_params, resumable_run
from plaidpp.training.models import check_trained_on, load_model_and_tokenizer, load_tokenizer, model_fingerprint


@dataclass(frozen=True)
class SamplingPlan:
    """One sampling run, checked: the model exists and writes ``repr``, and ``out_path`` is new or holds this
    very run (so it can be resumed)."""

    model_dir: Path
    model_id: str
    prompts: list[str]
    counts: list[int]
    sampler: SamplerSettings
    temperature: float
    repr: str
    seed: int
    out_path: Path


def plan_sampling(model_dir: str | Path, prompts: PromptSet, *, sampler: SamplerSettings, temperature: float,
                  repr: str, seed: int, out_path: str | Path) -> SamplingPlan:
    """Every check that needs no model loaded: a missing model, a model trained on another representation, or
    a samples file of another run is refused here, in one line."""
    model_dir = Path(model_dir)
    if not model_dir.exists():
        raise UserError(f"no model at {model_dir}: run `plaidpp sft` first (or point to one)")
    check_trained_on(model_dir, repr)
    texts, counts = prompt_counts(prompts)
    plan = SamplingPlan(model_dir, model_fingerprint(model_dir), texts, counts, sampler, temperature, repr, seed,
                        Path(out_path))
    check_resumable(plan.out_path, run_record(plan.model_id, repr, temperature, sampler, seed,
                                              slot_prompts(texts, counts)))
    return plan


def sample_model(plan: SamplingPlan, model_cfg: ModelSettings, *, progress: bool = True,
                 on_batch: Callable[[SamplingStats], None] | None = None) -> tuple[SamplingStats, dict[str, Any]]:
    """Load the planned model and sample (what the ``sample`` stage and RLIP's sampling steps both do).
    Returns the sampler's stats and where/how it ran."""
    started = time.perf_counter()
    if plan.sampler.engine == "vllm":
        from plaidpp.sampling.vllm_engine import load_vllm

        tokenizer = load_tokenizer(str(plan.model_dir), model_cfg)
        model = load_vllm(plan.model_dir, model_cfg, plan.sampler.vllm, plan.model_id, tokenizer.eos_token_id)
        device = model.device
    else:
        model, tokenizer = load_model_and_tokenizer(str(plan.model_dir), model_cfg, for_training=False)
        device = str(next(model.parameters()).device)
    info = {"model_dir": str(plan.model_dir), "repr": plan.repr, "n_requested": sum(plan.counts),
            "prompts": len(plan.prompts), "device": device, "engine": plan.sampler.engine,
            "torch_threads": torch.get_num_threads(), "model_load_seconds": round(time.perf_counter() - started, 2)}
    stats = generate(model, tokenizer, plan.prompts, plan.counts, sampler=plan.sampler, temperature=plan.temperature,
                     repr=plan.repr, out_path=plan.out_path, seed=plan.seed, model_id=plan.model_id,
                     progress=progress, on_batch=on_batch)
    return stats, info


def sample(cfg: SampleConfig) -> dict:
    set_torch_threads(cfg.workers)
    out_file = Path(cfg.out_file)
    plan = plan_sampling(cfg.model_dir, cfg.prompts, sampler=cfg.sampler, temperature=cfg.temperature,
                         repr=cfg.repr, seed=cfg.seed, out_path=out_file)
    with resumable_run(cfg, "sample", out_file.with_name(out_file.name + ".mlflow_run_id")) as mlflow:
        if mlflow is not None:
            mlflow.log_params({**flat_params({"sampler": cfg.sampler, "prompts": cfg.prompts}),
                               "temperature": cfg.temperature, "model_dir": cfg.model_dir, "repr": cfg.repr,
                               "seed": cfg.seed})

        def log_batch(stats: SamplingStats) -> None:
            if mlflow is not None:
                mlflow.log_metrics({"crystals_per_s": stats.crystals_per_s, "tokens_per_s": stats.tokens_per_s,
                                    "attempt_parse_rate": stats.decoded / max(stats.attempts, 1)},
                                   step=stats.attempts)

        stats, info = sample_model(plan, cfg.model, on_batch=log_batch)
        summary = {"out_file": str(out_file), **info, **stats.as_dict()}
        _add_file_totals(summary, out_file)
        metrics = Path(cfg.metrics_file)
        write_metrics(metrics, summary)
        if mlflow is not None:
            mlflow.log_metrics({k: float(v) for k, v in summary.items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool)})
            mlflow.log_artifact(str(metrics))
    print(f"sample: {summary['file_final_decoded']}/{summary['n_requested']} slots decoded "
          f"(attempt parse rate {summary['file_attempt_parse_rate']:.3f}), "
          f"{stats.crystals_per_s:.1f} crystals/s -> {out_file}")
    return summary


def _add_file_totals(summary: dict, out_file: Path) -> None:
    """Whole-file figures (including rows written before a resume)."""
    rows = [json.loads(line) for line in out_file.read_text().splitlines() if line.strip()]
    finals = [r for r in rows if r["final"]]
    summary["file_attempts"] = len(rows)
    summary["file_attempt_parse_rate"] = sum(r["decoded"] for r in rows) / len(rows) if rows else 0.0
    summary["file_final"] = len(finals)
    summary["file_final_decoded"] = sum(r["decoded"] for r in finals)
    summary["file_refused"] = sum(r.get("refused") is not None for r in rows)  # decoded, resampled (generate)
    summary["file_crowded"] = sum(r.get("crowded", 0) > 0 for r in finals)  # kept, distance rule fell back
    summary["file_loosened"] = sum(r.get("loosened", 0) > 0 for r in finals)  # kept, covalent floor gave way
    summary["file_first_attempt_parse_rate"] = (
        sum(r["decoded"] for r in rows if r["attempt"] == 0) / max(1, sum(r["attempt"] == 0 for r in rows)))
