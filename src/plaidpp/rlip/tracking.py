"""MLflow helpers for the RLIP stages: one place that knows "tracking.uri null means no logging"."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def enabled(cfg: Any) -> bool:
    return bool(cfg.get("tracking") and cfg.tracking.get("uri"))


def _mlflow(cfg: Any):  # noqa: ANN202 - mlflow module
    import mlflow

    mlflow.set_tracking_uri(cfg.tracking.uri)
    mlflow.set_experiment(cfg.tracking.experiment)
    return mlflow


@contextmanager
def run(cfg: Any, name: str, run_id: str | None = None, nested: bool = False,
        tags: dict[str, str] | None = None) -> Iterator[Any]:
    """An MLflow run (resumed when ``run_id`` is given); yields None when tracking is off."""
    if not enabled(cfg):
        yield None
        return
    mlflow = _mlflow(cfg)
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else name, nested=nested, tags=tags) as active:
        yield active


def log_params(params: dict[str, Any]) -> None:
    import mlflow

    flat: dict[str, Any] = {}
    _flatten("", params, flat)
    existing = mlflow.active_run().data.params if mlflow.active_run() else {}
    # MLflow refuses to change a logged param; on resume, only log what is new
    mlflow.log_params({k: str(v)[:500] for k, v in flat.items() if k not in existing})


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    import math

    import mlflow

    clean = {k.replace("@", "_"): float(v) for k, v in metrics.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}
    if clean:
        mlflow.log_metrics(clean, step=step)


def log_summary(cfg: Any, name: str, params: dict[str, Any], metrics: dict[str, float]) -> None:
    """A single stage run (``plaidpp pairs`` / ``plaidpp dpo``): params and metrics, nested if a run is open."""
    if not enabled(cfg):
        return
    import mlflow

    with run(cfg, name, nested=mlflow.active_run() is not None):
        log_params(params)
        log_metrics(metrics)
