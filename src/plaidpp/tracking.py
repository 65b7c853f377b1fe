"""MLflow for every stage: one place that knows "tracking.uri null means no logging".

Runs are resumable: a stage that was killed re-opens the same run (its id kept in a small file next to its
resumable state), so the MLflow UI shows one run per stage output, not one per attempt.

The experiment is tagged as model development (``mlflow.experimentKind``), so MLflow 3's UI opens on the runs
table rather than its GenAI traces overview. A stage that DVC runs (``DVC_STAGE`` in its environment) becomes a
child of one parent run per pipeline run, keyed by the git commit, uncommitted changes, params.yaml and the DVC
experiment name (``DVC_EXP_NAME``; ``workspace`` for ``dvc repro``): the stages of one ``dvc repro`` or ``dvc exp
run`` sit under one row, RLIP iterations below their RLIP run. A stage run by hand stays a top-level run.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from plaidpp.settings.common import StageSettings

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def enabled(cfg: StageSettings | None) -> bool:
    """Tracking on: a configured URI (None stands for a process that must not log, e.g. a training process that
    is not the main one of several)."""
    return cfg is not None and cfg.tracking.uri is not None


def flat_params(params: Any, prefix: str = "") -> dict[str, str]:
    """Nested settings or dict -> {"a.b.c": "value"} (MLflow params are flat strings, at most 6000 chars)."""
    data = dataclasses.asdict(params) if dataclasses.is_dataclass(params) else params
    out: dict[str, str] = {}
    for key, value in (data or {}).items():
        name = f"{prefix}{key}"
        if dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        if isinstance(value, dict):
            out.update(flat_params(value, f"{name}."))
        else:
            out[name] = str(value)[:6000]
    return out


@lru_cache(maxsize=1)
def provenance_tags() -> dict[str, str]:
    """The code a run ran: git commit of the project and whether the tree had uncommitted changes.

    Computed once per process: the code a process runs is the code it imported at start."""
    import subprocess

    from plaidpp.config import PROJECT_ROOT

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        return {"git_commit": git("rev-parse", "HEAD"),
                "git_dirty": str(bool(git("status", "--porcelain", "--untracked-files=no"))).lower()}
    except (OSError, subprocess.SubprocessError):  # not a git checkout (an sdist, say) or no git binary
        return {"git_commit": "unknown", "git_dirty": "unknown"}


EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")  # the value MLflow 3's UI knows


def artifact_location(uri: str) -> str | None:
    """Where a new experiment keeps its files: beside a sqlite store (``<folder of the .db>/mlruns``), so that
    nothing lands in the working directory of whoever runs a stage (MLflow's default is ``./mlruns`` of the
    process that creates the experiment); None for a server, which decides itself."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///")).expanduser().resolve()
    return (database.parent / "mlruns").as_uri()


def _connect(cfg: StageSettings):  # noqa: ANN202 - the mlflow module
    import mlflow

    mlflow.set_tracking_uri(cfg.tracking.uri)
    if mlflow.get_experiment_by_name(cfg.tracking.experiment) is None:
        try:
            mlflow.create_experiment(cfg.tracking.experiment, artifact_location=artifact_location(cfg.tracking.uri))
        except mlflow.exceptions.MlflowException:  # another stage created it meanwhile
            pass
    experiment = mlflow.set_experiment(cfg.tracking.experiment)
    if experiment.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:
        mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, *EXPERIMENT_KIND)
    return mlflow


def pipeline_key() -> str | None:
    """Which pipeline run a DVC stage belongs to; None outside DVC (a stage run by hand)."""
    import hashlib

    if "DVC_STAGE" not in os.environ:
        return None
    from plaidpp.config import PROJECT_ROOT

    tags = provenance_tags()
    params = Path(os.environ.get("DVC_ROOT", PROJECT_ROOT)) / "params.yaml"
    digest = hashlib.sha256(params.read_bytes()).hexdigest()[:12] if params.is_file() else "none"
    dirty = "+dirty" if tags["git_dirty"] == "true" else ""
    return f"{tags['git_commit'][:12]}{dirty} {_dvc_experiment()} params:{digest}"


def _dvc_experiment() -> str:
    return os.environ.get("DVC_EXP_NAME") or "workspace"


def _pipeline_parent(mlflow, experiment_name: str, key: str) -> str:  # noqa: ANN001 - the mlflow module
    """The id of the parent run of pipeline ``key``, created (and marked finished: it holds no work of its own)
    the first time a stage of that pipeline run asks."""
    client = mlflow.MlflowClient()
    experiment = mlflow.get_experiment_by_name(experiment_name)
    found = client.search_runs([experiment.experiment_id], filter_string=f"tags.`plaidpp.pipeline` = '{key}'",
                               max_results=1)
    if found:
        return found[0].info.run_id
    commit = provenance_tags()["git_commit"][:12]
    parent = client.create_run(experiment.experiment_id, run_name=f"pipeline {commit} {_dvc_experiment()}",
                               tags={"plaidpp.pipeline": key, **provenance_tags(), "dvc.experiment": _dvc_experiment()})
    client.set_terminated(parent.info.run_id, "FINISHED")
    return parent.info.run_id


def _run_tags(cfg: StageSettings, mlflow, extra: dict[str, str] | None, nested: bool) -> dict[str, str]:  # noqa: ANN001
    """Provenance, the caller's tags and, for a top-level run of a DVC stage, its pipeline parent."""
    tags = {**provenance_tags(), **(extra or {})}
    key = None if nested else pipeline_key()
    if key is not None:
        tags["mlflow.parentRunId"] = _pipeline_parent(mlflow, cfg.tracking.experiment, key)
        tags["dvc.stage"] = os.environ["DVC_STAGE"]
    return tags


@contextmanager
def run(cfg: StageSettings, name: str, run_id: str | None = None, nested: bool = False,
        tags: dict[str, str] | None = None) -> Iterator[Any]:
    """An active MLflow run (resumed when ``run_id`` is given); yields None when tracking is off."""
    if not enabled(cfg):
        yield None
        return
    mlflow = _connect(cfg)
    tags = _run_tags(cfg, mlflow, tags, nested)
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else name, nested=nested, tags=tags) as active:
        yield active


@contextmanager
def resumable_run(cfg: StageSettings | None, name: str, run_id_file: Path) -> Iterator[Any]:
    """The mlflow module inside a run whose id lives in ``run_id_file`` (re-opened after a kill); None when off.

    The run ends FINISHED, or KILLED when the body raises (Ctrl-C included)."""
    if not enabled(cfg):
        yield None
        return
    mlflow = _connect(cfg)
    run_id_file = Path(run_id_file)
    run_id = run_id_file.read_text().strip() if run_id_file.exists() else None
    tags = _run_tags(cfg, mlflow, None, nested=False)
    try:
        active = mlflow.start_run(run_id=run_id, run_name=None if run_id else name, tags=tags)
    except Exception:  # the stored run was deleted or belongs to another store: start afresh
        active = mlflow.start_run(run_name=name, tags=tags)
    run_id_file.parent.mkdir(parents=True, exist_ok=True)
    run_id_file.write_text(active.info.run_id)
    try:
        yield mlflow
        mlflow.end_run("FINISHED")
    except BaseException:
        mlflow.end_run("KILLED")
        raise


def log_params(params: dict[str, Any]) -> None:
    import mlflow

    flat = flat_params(params)
    existing = mlflow.active_run().data.params if mlflow.active_run() else {}
    # MLflow refuses to change a logged param; on resume, only log what is new
    mlflow.log_params({k: v[:500] for k, v in flat.items() if k not in existing})


def log_metrics(metrics: dict[str, Any], step: int | None = None) -> None:
    """Numeric, finite values only (None, bools and NaN are skipped); '@' is not allowed in MLflow keys."""
    import mlflow

    clean = {k.replace("@", "_"): float(v) for k, v in metrics.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}
    if clean:
        mlflow.log_metrics(clean, step=step)


def log_summary(cfg: StageSettings, name: str, params: dict[str, Any], metrics: dict[str, Any],
                artifacts: list[Path] = ()) -> None:
    """A one-shot stage run (evaluate, pairs, dpo): params, metrics and files, nested if a run is open."""
    if not enabled(cfg):
        return
    import mlflow

    with run(cfg, name, nested=mlflow.active_run() is not None):
        log_params(params)
        log_metrics(metrics)
        for path in artifacts:
            mlflow.log_artifact(str(path))
