"""MLflow as a new user meets it: the runs table first, one parent row per pipeline run, its stages below."""

from __future__ import annotations

import pandas as pd
import pytest

from plaidpp import tracking


@pytest.fixture
def cfg(make_config):
    return make_config("report", tracking=True)


def _runs(cfg):
    import mlflow

    mlflow.set_tracking_uri(cfg.tracking.uri)
    return mlflow.search_runs(experiment_names=[cfg.tracking.experiment])


def test_stages_of_one_dvc_run_share_one_parent_and_a_hand_run_stays_top_level(cfg, monkeypatch, tmp_path):
    monkeypatch.setenv("DVC_EXP_NAME", "lucky-fish")
    for stage in ("sft", "sample"):
        monkeypatch.setenv("DVC_STAGE", stage)
        with tracking.run(cfg, stage):
            pass
    monkeypatch.setenv("DVC_STAGE", "evaluate")
    with tracking.resumable_run(cfg, "evaluate", tmp_path / "run_id.txt"):
        pass
    monkeypatch.delenv("DVC_STAGE")
    with tracking.run(cfg, "by hand"):
        pass
    runs = _runs(cfg).set_index("tags.mlflow.runName")
    parents = set(runs.loc[["sft", "sample", "evaluate"], "tags.mlflow.parentRunId"])
    assert len(parents) == 1
    parent = runs[runs["run_id"] == parents.pop()].iloc[0]
    assert parent["tags.dvc.experiment"] == "lucky-fish" and "lucky-fish" in parent["tags.plaidpp.pipeline"]
    assert parent["tags.git_commit"] == runs.loc["sft", "tags.git_commit"] and parent["status"] == "FINISHED"
    assert runs.loc["sample", "tags.dvc.stage"] == "sample"
    assert pd.isna(runs.loc["by hand", "tags.mlflow.parentRunId"])


def test_another_dvc_experiment_gets_its_own_parent(cfg, monkeypatch):
    monkeypatch.setenv("DVC_STAGE", "sft")
    for name in ("exp-a", "exp-b"):
        monkeypatch.setenv("DVC_EXP_NAME", name)
        with tracking.run(cfg, name):
            pass
    runs = _runs(cfg).set_index("tags.mlflow.runName")
    assert runs.loc["exp-a", "tags.mlflow.parentRunId"] != runs.loc["exp-b", "tags.mlflow.parentRunId"]


def test_the_experiment_opens_on_the_runs_table(cfg):
    import mlflow

    with tracking.run(cfg, "any"):
        pass
    experiment = mlflow.get_experiment_by_name(cfg.tracking.experiment)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
