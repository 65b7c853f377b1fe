"""The ``evaluate`` stage: samples JSONL in, ``structures.parquet`` + ``summary.json`` (+ MLflow) out.

    plaidpp evaluate samples=runs/samples.jsonl out=runs/eval [mlip=sevennet] [hull=mp20_fallback] [workers=2]
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from plaidpp import tracking
from plaidpp.errors import UserError
from plaidpp.evaluation.score import score_samples
from plaidpp.io import write_json

log = logging.getLogger(__name__)


def read_samples(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """JSON objects, one per line; a malformed line is a UserError naming its line number."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"samples file not found: {path} (samples=FILE.jsonl)")
    rows = []
    with path.open() as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{number}: expected a JSON object")
            rows.append(row)
    if limit:
        rows = rows[: int(limit)]
    if not rows:
        raise UserError(f"{path} has no samples")
    return rows


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def _parquet_safe(table: pd.DataFrame) -> pd.DataFrame:
    """Pass-through columns may hold mixed JSON values; store those as JSON text so parquet accepts them."""
    table = table.copy()
    for col in table.columns:
        if table[col].dtype == object:
            kinds = {type(v) for v in table[col] if v is not None and not (isinstance(v, float) and pd.isna(v))}
            if kinds - {str} and kinds != {bool}:
                table[col] = [None if v is None else json.dumps(v, default=str) for v in table[col]]
    return table


def write_outputs(table: pd.DataFrame, summary: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(out_dir / "structures.parquet", lambda p: _parquet_safe(table).to_parquet(p, index=False))
    _atomic_write(out_dir / "summary.json", lambda p: p.write_text(json.dumps(summary, indent=2, default=str)))


def _log_mlflow(cfg: DictConfig, summary: dict[str, Any], out_dir: Path) -> None:
    params = {"samples": str(cfg.samples), "mlip": summary["mlip"],
              "mlip_apply_mp2020_correction": summary["mlip_apply_mp2020_correction"],
              "hull_source": summary["hull_source"], "relax": summary["relax_settings"],
              "thresholds": json.dumps(summary["thresholds"]), "novelty_reference": summary.get("novelty_reference")}
    metrics = dict(summary)
    for number, figures in summary["per_spacegroup"].items():
        metrics.update({f"sg{number}/{k}": v for k, v in figures.items()})
    tracking.log_summary(cfg, f"evaluate:{Path(str(cfg.samples)).name}", params, metrics,
                         artifacts=[out_dir / "summary.json", out_dir / "structures.parquet"])


def _write_metrics_copy(summary: dict[str, Any], path: Path) -> None:
    """The summary without the echoed config (DVC shows every number in a metrics file)."""
    write_json(path, {k: v for k, v in summary.items() if k != "config"}, default=str)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score ``cfg.samples`` and write ``cfg.out``/{structures.parquet, summary.json}; returns the summary."""
    if not cfg.get("samples"):
        raise UserError("no samples file: plaidpp evaluate samples=FILE.jsonl out=DIR")
    out_dir = Path(str(cfg.out))
    start = time.monotonic()
    rows = read_samples(cfg.samples, cfg.get("max_samples"))
    table, summary = score_samples(rows, cfg)
    summary["samples_file"] = str(cfg.samples)
    summary["seconds"] = round(time.monotonic() - start, 1)
    summary["config"] = OmegaConf.to_container(cfg, resolve=True)
    write_outputs(table, summary, out_dir)
    if cfg.get("metrics_file"):  # a flat copy for DVC's metrics (dvc metrics show / diff)
        _write_metrics_copy(summary, Path(str(cfg.metrics_file)))
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
