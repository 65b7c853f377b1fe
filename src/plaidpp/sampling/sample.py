"""``plaidpp sample``: the SFT (or any saved) generator's crystals for the paper's prompts.

One file holds every prompt's slots: first ``n_unconditional`` unconditional samples, then
``n_per_spacegroup`` for each space group in ``sampling.spacegroups`` (rows carry the requested group).
Re-running after a kill resumes the file (see ``generate``); a finished file is left as it is.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from plaidpp.errors import UserError
from plaidpp.prompts import spacegroup_prompt, unconditional_prompt
from plaidpp.sampling.generate import generate
from plaidpp.training.models import load_model_and_tokenizer
from plaidpp.training.sft import set_threads
from plaidpp.tracking import flat_params, resumable_run


def stage_prompts(sampling: DictConfig) -> tuple[list[str], list[int]]:
    """The prompts and per-prompt counts the sampling config asks for (zero-count prompts dropped)."""
    prompts, counts = [], []
    if int(sampling.n_unconditional) > 0:
        prompts.append(unconditional_prompt())
        counts.append(int(sampling.n_unconditional))
    if int(sampling.n_per_spacegroup) > 0:
        for number in sampling.spacegroups or []:
            try:
                prompts.append(spacegroup_prompt(int(number)))
            except ValueError as exc:
                raise UserError(str(exc)) from None
            counts.append(int(sampling.n_per_spacegroup))
    if not prompts:
        raise UserError("nothing to sample: set sampling.n_unconditional or sampling.n_per_spacegroup > 0")
    return prompts, counts


def _check_repr(model_dir: Path, repr_name: str) -> None:
    record = model_dir / "training_data.json"
    if record.is_file():
        trained = json.loads(record.read_text()).get("repr")
        if trained and trained != repr_name:
            raise UserError(f"{model_dir} was trained on {trained!r} text; run with repr={trained}")


def sample(cfg: DictConfig) -> dict:
    set_threads(int(cfg.workers))
    model_dir = Path(cfg.model_dir)
    if not model_dir.exists():
        raise UserError(f"no model at {model_dir}: run `plaidpp sft` first (or set model_dir=...)")
    _check_repr(model_dir, cfg.repr.name)
    s = cfg.sampling
    prompts, counts = stage_prompts(s)
    started = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer(str(model_dir), cfg.model, for_training=False)
    load_seconds = time.perf_counter() - started
    out_file = Path(cfg.out_file)
    with resumable_run(cfg, "sample", out_file.with_name(out_file.name + ".mlflow_run_id")) as mlflow:
        if mlflow is not None:
            mlflow.log_params({**flat_params({"sampling": s}), "model_dir": str(model_dir), "repr": cfg.repr.name,
                               "seed": cfg.seed})

        def log_batch(stats) -> None:
            if mlflow is not None:
                mlflow.log_metrics({"crystals_per_s": stats.crystals_per_s, "tokens_per_s": stats.tokens_per_s,
                                    "attempt_parse_rate": stats.decoded / max(stats.attempts, 1)},
                                   step=stats.attempts)

        stats = generate(
            model, tokenizer, prompts, counts,
            temperature=float(s.temperature), top_p=float(s.top_p), batch_size=int(s.batch_size),
            repr=cfg.repr.name, max_attempts=int(s.max_attempts), out_path=out_file, seed=int(cfg.seed),
            max_new_tokens=int(s.max_new_tokens), on_batch=log_batch,
            engine=str(s.get("engine", "compact")),
        )
        summary = {
            "out_file": str(out_file), "model_dir": str(model_dir), "repr": cfg.repr.name,
            "n_requested": sum(counts), "prompts": len(prompts),
            "device": str(next(model.parameters()).device), "torch_threads": torch.get_num_threads(),
            "model_load_seconds": round(load_seconds, 2), **stats.as_dict(),
        }
        _add_file_totals(summary, out_file)
        metrics = Path(cfg.metrics_file)
        metrics.parent.mkdir(parents=True, exist_ok=True)
        metrics.write_text(json.dumps(summary, indent=2) + "\n")
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
    summary["file_first_attempt_parse_rate"] = (
        sum(r["decoded"] for r in rows if r["attempt"] == 0) / max(1, sum(r["attempt"] == 0 for r in rows)))
