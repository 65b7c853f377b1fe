"""Settings every stage shares: folders, run tracking, the seed and the worker count."""

from __future__ import annotations

from dataclasses import dataclass

from plaidpp.settings.base import nested, setting


@dataclass
class PathSettings:
    root: str = setting("${oc.env:PLAIDPP_ROOT,.}", help="project root; stages run from it (dvc and the README do)")
    raw: str = setting("${paths.root}/data/raw", help="vendored inputs (MP-20 rows, tokenizer, hull data)")
    processed: str = setting("${paths.root}/data/processed", help="the prepare stage's crystal text")
    models: str = setting("${paths.root}/models", help="trained generators")
    metrics: str = setting("${paths.root}/metrics", help="git-tracked stage metrics (dvc metrics show)")
    cache: str = setting("${paths.root}/.cache", help="safe to delete: encodings, relaxations, checkpoints")


@dataclass
class TrackingSettings:
    uri: str | None = setting("sqlite:///${paths.root}/mlflow.db",
                              help="MLflow tracking URI; sqlite because the file store needs opting in; null = off")
    experiment: str = setting("plaidpp", help="MLflow experiment name")


@dataclass
class StageSettings:
    """What every stage config holds besides its own settings."""

    paths: PathSettings = nested(PathSettings, "folders")
    tracking: TrackingSettings = nested(TrackingSettings, "MLflow")
    seed: int = setting(0, help="base seed; every random draw of a stage derives from it", ge=0)
    workers: int = setting(0, help="CPU worker processes / torch threads; 0 = all cores", ge=0)
