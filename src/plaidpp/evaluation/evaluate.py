"""The ``evaluate`` stage: samples JSONL in, ``structures.parquet`` + ``summary.json`` (+ MLflow) out.

    plaidpp evaluate --samples runs/samples.jsonl --out runs/eval [mlip=sevennet] [hull=mp20_fallback] [workers=2]
    plaidpp evaluate --samples generated_cifs/ --out runs/other_model       # any generator's crystals

``score_to_dir`` is the one writer of a scored folder: this stage and RLIP's reward and evaluation steps call
it, so every scored folder has the same table schema, summary and provenance.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from plaidpp import tracking
from plaidpp.errors import UserError
from plaidpp.evaluation.inputs import read_input
from plaidpp.evaluation.score import get_hull, get_training_set, score_samples
from plaidpp.evaluation.shards import run_shards
from plaidpp.io import atomic_write, exclusive, write_json, write_metrics
from plaidpp.settings.stages import EvaluateConfig

log = logging.getLogger(__name__)


def _parquet_safe(table: pd.DataFrame) -> pd.DataFrame:
    """Pass-through columns may hold mixed JSON values; store those as JSON text so parquet accepts them."""
    table = table.copy()
    for col in table.columns:
        if table[col].dtype == object:
            kinds = {type(v) for v in table[col] if v is not None and not (isinstance(v, float) and math.isnan(v))}
            if kinds - {str} and kinds != {bool}:
                table[col] = [None if v is None else json.dumps(v, default=str) for v in table[col]]
    return table


def check_output_dir(out_dir: Path) -> None:
    """A folder that can hold the results, made now: an --out that is a file or cannot be written is one line
    before any relaxation, not a traceback after all of them."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"--out {out_dir} cannot be written ({exc.strerror or type(exc).__name__})") from None


def check_inputs(cfg: EvaluateConfig) -> None:
    """Every input the scoring needs, loaded or checked before any work: the hull, the novelty reference, a
    checkpoint file."""
    get_training_set(cfg)  # a missing file fails at once; the hull takes a few seconds to build
    get_hull(cfg)
    if cfg.mlip.checkpoint and not Path(cfg.mlip.checkpoint).is_file():
        raise UserError(f"mlip.checkpoint not found: {cfg.mlip.checkpoint}")


def score_to_dir(rows: list[dict[str, Any]], cfg: EvaluateConfig, out_dir: Path, samples_file: str | Path,
                 extra: dict[str, Any] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Score ``rows`` and write ``out_dir``/{structures.parquet, summary.json} (each written whole). The folder
    is checked first and locked while scoring: a second evaluation of the same folder is refused."""
    check_output_dir(out_dir)
    check_inputs(cfg)
    with exclusive(out_dir, "another evaluation"):
        start = time.monotonic()
        table, summary = score_samples(rows, cfg)
        summary["samples_file"] = str(samples_file)
        summary.update(extra or {})
        summary["seconds"] = round(time.monotonic() - start, 1)
        summary["config"] = asdict(cfg)
        atomic_write(out_dir / "structures.parquet", lambda p: _parquet_safe(table).to_parquet(p, index=False))
        write_json(out_dir / "summary.json", summary, default=str)
    return table, summary


def _log_mlflow(cfg: EvaluateConfig, summary: dict[str, Any], out_dir: Path) -> None:
    params = {"samples": str(cfg.samples), "mlip": summary["mlip"],
              "mlip_apply_mp2020_correction": summary["mlip_apply_mp2020_correction"],
              "hull_source": summary["hull_source"], "relax": summary["relax_settings"],
              "thresholds": json.dumps(summary["thresholds"]), "novelty_reference": summary.get("novelty_reference")}
    metrics = dict(summary)
    for number, figures in summary["per_spacegroup"].items():
        metrics.update({f"sg{number}/{k}": v for k, v in figures.items()})
    tracking.log_summary(cfg, f"evaluate:{Path(str(cfg.samples)).name}", params, metrics,
                         artifacts=[out_dir / "summary.json", out_dir / "structures.parquet"])


def evaluate(cfg: EvaluateConfig) -> dict[str, Any]:
    """Score ``cfg.samples`` and write ``cfg.out``/{structures.parquet, summary.json}; returns the summary."""
    out_dir = Path(cfg.out)
    extra = {}
    if cfg.shards.n > 1:  # the relaxations first, by many jobs (shards.py); the scoring below finds them cached
        check_output_dir(out_dir)
        check_inputs(cfg)
        extra["shards"] = run_shards(cfg)
    samples = read_input(cfg.samples, cfg.samples_format, cfg.csv_column, cfg.inputs, cfg.max_samples)
    _, summary = score_to_dir(samples.rows, cfg, out_dir, cfg.samples, {**extra, **samples.describe()})
    if cfg.metrics_file:  # the headline numbers for DVC (dvc metrics show / diff); the rest stays in summary.json
        write_metrics(cfg.metrics_file, {k: v for k, v in summary.items() if k not in ("config", "per_spacegroup")})
    if summary.get("hull_warning"):
        log.warning("summary.json: %s", summary["hull_warning"])
    _log_mlflow(cfg, summary, out_dir)
    headline = ", ".join(
        f"{k}={summary[k]:.4f}" for k in ("validity_structural", "validity_composition", "stability_rate",
                                           "uniqueness_rate", "novelty_rate", "sun_rate") if summary[k] is not None
    )
    print(f"evaluated {summary['n_requested']} samples in {summary['seconds']} s -> {out_dir}: {headline}")
    if summary.get("hull_warning"):
        print(f"WARNING: {summary['hull_warning']}")
    return summary
