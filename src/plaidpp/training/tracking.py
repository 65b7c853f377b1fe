"""MLflow for the generator stages: one run per stage output, resumed (same run id) after a kill.

Tracking is off when ``cfg.tracking.uri`` is null; callers then get ``None`` and skip logging.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def flat_params(cfg: DictConfig | dict, prefix: str = "") -> dict[str, str]:
    """Nested config -> {"a.b.c": "value"} (MLflow params are flat strings, at most 6000 chars)."""
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    out: dict[str, str] = {}
    for key, value in (data or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, DictConfig):
            value = OmegaConf.to_container(value, resolve=True)
        if isinstance(value, dict):
            out.update(flat_params(value, f"{name}."))
        else:
            out[name] = str(value)[:6000]
    return out


@contextlib.contextmanager
def mlflow_run(cfg: DictConfig, run_name: str, run_id_file: Path) -> Iterator[Any]:
    """An active MLflow run (the module), resuming the id in ``run_id_file`` if present; None when off."""
    uri = cfg.tracking.get("uri") if cfg.get("tracking") else None
    if not uri:
        yield None
        return
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(cfg.tracking.experiment)
    run_id_file = Path(run_id_file)
    run_id = run_id_file.read_text().strip() if run_id_file.exists() else None
    try:
        run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name)
    except Exception:  # the stored run was deleted or belongs to another store: start afresh
        run = mlflow.start_run(run_name=run_name)
    run_id_file.parent.mkdir(parents=True, exist_ok=True)
    run_id_file.write_text(run.info.run_id)
    try:
        yield mlflow
        mlflow.end_run("FINISHED")
    except BaseException:
        mlflow.end_run("KILLED")
        raise
