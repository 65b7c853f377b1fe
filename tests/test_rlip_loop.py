"""The RLIP loop end to end on a tiny untrained Qwen2 (fast: its text rarely decodes, so little is relaxed).

Covers: per-iteration files and done-markers, single-step calls (what DVC runs), resume after a real kill
(SIGKILL of `plaidpp rlip` mid-sampling: the re-run neither loses nor duplicates samples and skips finished
steps), the model hand-over (iteration 2 starts from iteration 1's model), and the nested MLflow runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from plaidpp.config import compose
from plaidpp.errors import UserError
from plaidpp.io import numbers_only
from plaidpp.rlip.driver import rlip
from plaidpp.rlip.layout import Layout
from plaidpp.stats import wilson

from .conftest import shrunk_overrides

ROOT = Path(__file__).resolve().parents[1]


def overrides(tmp: Path) -> list[str]:
    return shrunk_overrides("rlip", tmp, [
        f"rlip.init_model={tmp}/pi0", f"rlip.metrics_file={tmp}/rlip.json", "tracking.experiment=t",
        "rollout.n_unconditional=6", "rollout.n_per_spacegroup=2", "rollout.spacegroups=[1,15]",
        "sampler.max_new_tokens=24", "sampler.max_attempts=2", "sampler.batch_size=4",
        "evaluation.prompts.n_unconditional=2", "evaluation.prompts.n_per_spacegroup=1",
        "evaluation.prompts.spacegroups=[1,15]", "evaluation.endpoint_unconditional=3",
        "evaluation.endpoint_per_spacegroup=1", "evaluation.audit_samples=4",
        'reward.overrides=["novelty.enabled=false"]', 'evaluation.overrides=["novelty.enabled=false"]', "rlip.run=t",
    ], tracking=True)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory, tiny_model_dir):
    import shutil

    root = tmp_path_factory.mktemp("rlip")
    shutil.copytree(tiny_model_dir, root / "pi0")
    return root


def _final_indices(path: Path) -> list[int]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted(r["index"] for r in rows if r["final"])


@pytest.mark.slow
def test_kill_mid_sampling_then_resume_to_the_end(tmp):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "plaidpp.cli", "rlip", *overrides(tmp), "rollout.n_unconditional=400",
           "sampler.batch_size=2", "sampler.max_attempts=1"]
    samples = tmp / "data" / "rlip" / "t" / "iter_1" / "samples.jsonl"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and (not samples.exists() or len(samples.read_text().splitlines()) < 6):
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        time.sleep(0.05)  # 404 samples take seconds on a fast CPU: poll finely so the kill lands mid-way
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp / "data" / "rlip" / "t" / "iter_1" / "sample.done.json").exists()
    n_before = len(_final_indices(samples))
    assert 0 < n_before < 404

    # the same run, resumed in-process with the full overrides: nothing lost, nothing duplicated
    cfg = compose("rlip", [*overrides(tmp), "rollout.n_unconditional=400", "sampler.batch_size=2",
                           "sampler.max_attempts=1"])
    summary = rlip(cfg)
    assert _final_indices(samples) == list(range(404))  # 400 unconditional + 2 x 2 groups
    assert summary["iterations"]["1"]["temperature"] == pytest.approx(0.7)
    layout = Layout(cfg)
    for i in (1, 2):
        for step in ("sample", "score", "pairs", "update", "evaluate", "audit"):
            assert layout.marker(i, step).is_file(), (i, step)
        assert (layout.model(i) / "config.json").is_file()
        assert (layout.model(i) / "training_data.json").is_file()  # SFT side files carried forward
    assert layout.marker(0, "evaluate").is_file() and layout.marker(0, "audit").is_file()
    audit = json.loads(layout.marker(1, "audit").read_text())  # the evaluation sample, judged by the reward MLIP
    assert audit["reward"]["n_requested"] == json.loads(layout.marker(1, "evaluate").read_text())["n_requested"]
    last_audit, last_eval = (json.loads(layout.marker(2, step).read_text()) for step in ("audit", "evaluate"))
    assert (last_audit["reward"]["n_requested"], last_eval["n_requested"]) == (4, 5)  # audit_samples caps it
    update2 = json.loads(layout.marker(2, "update").read_text())
    assert update2["policy"] == str(layout.model(1)) and update2["reference"] == str(layout.model(1))

    # a finished run re-runs as a no-op (every step skipped), files untouched
    stamp = samples.stat().st_mtime_ns
    rlip(cfg)
    assert samples.stat().st_mtime_ns == stamp

    metrics = json.loads((tmp / "rlip_runs" / "t.json").read_text())  # a named run writes beside metrics_file
    assert set(metrics["iterations"]) == {"0", "1", "2"}
    assert numbers_only(metrics) == metrics  # a DVC metrics file: numbers only, so `dvc metrics show` is a table
    for row in metrics["iterations"].values():  # every evaluated rate with its Wilson interval
        for rate in ("parse_rate", "validity_structural", "stability_rate"):  # (novelty is off here: no S.U.N.)
            assert row[f"eval/{rate}_ci95_low"] <= row[f"eval/{rate}"] <= row[f"eval/{rate}_ci95_high"]
        n = row["eval/n_requested"]
        assert (row["eval/validity_structural_ci95_low"], row["eval/validity_structural_ci95_high"]) == tuple(
            wilson(round(row["eval/validity_structural"] * n), int(n)))
    _dvc_draws_every_plot(layout.plots_path(), tmp / "dvc_plots")
    # pi_0 and the last iteration draw the larger endpoint set (3 + 2 x 1), the iteration between 2 + 2 x 1
    assert [metrics["iterations"][i]["eval/n_requested"] for i in ("0", "1", "2")] == [5, 4, 5]
    for rate in ("sun_rate", "ssun_rate", "stability_rate", "metastability_rate", "validity_structural",
                 "uniqueness_rate"):  # the verdict in the DVC metrics file: the difference with its interval
        if rate in metrics["vs_sft"]["rates"]:
            entry = metrics["vs_sft"]["rates"][rate]
            assert entry["difference_ci95"]["low"] <= entry["difference"] <= entry["difference_ci95"]["high"]
    assert {"validity_structural", "stability_rate"} <= set(metrics["vs_sft"]["rates"])
    by_task = metrics["vs_sft"]["by_task"]  # per task, as the paper states its gains: 3 unconditional, 2 conditioned
    assert [by_task[t]["rates"]["validity_structural"]["n_a"] for t in ("unconditional", "conditional")] == [3, 2]
    assert by_task["unconditional"]["paired"] == 1
    summary = json.loads(layout.summary_path().read_text())  # the names and tests live in the run's summary
    assert summary["vs_sft"]["iteration"] == 2 and summary["vs_sft"]["paired"] is True  # same prompts, same seed
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert summary["reward_mlip"] == params["rlip"]["reward_mlip"] and summary["eval_mlip"] == params["rlip"]["eval_mlip"]

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["t"])
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    children = runs[runs["tags.mlflow.parentRunId"].notna()]
    assert len(parents) == 1  # the killed and resumed invocations share one parent run
    assert sorted(children["tags.iteration"]) == ["0", "1", "2"]
    assert "metrics.temperature" in children.columns


def _dvc_draws_every_plot(rows_file: Path, repo: Path) -> None:
    """`dvc plots show` (the real DVC) renders every series of the RLIP rows file with the project's plot
    definitions, without errors: what `dvc plots show` / `dvc plots diff` do on the pipeline's file."""
    import shutil

    from plaidpp.pipeline import _plot_definitions

    repo.mkdir()
    shutil.copy(rows_file, repo / "rlip.json")
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"plots": _plot_definitions(["rlip.json"])}))
    run = dict(cwd=repo, capture_output=True, text=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    subprocess.run(["git", "init", "-q"], check=True, **run)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], check=True, **run)
    shown = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "--json"], **run)
    result = json.loads(shown.stdout)
    assert "errors" not in result, result["errors"]
    for name, plots in result["data"].items():
        values = plots[0]["content"]["data"]["values"]
        assert {row["iteration"] for row in values} == {0, 1, 2}, name


def test_single_step_calls_and_fixed_reference(tmp):
    cfg = compose("rlip", [*overrides(tmp), "rlip.run=single", "rlip.reference=initial", "tracking.uri=null"])
    layout = Layout(cfg)
    assert layout.reference(2, "initial") == layout.model(0)
    assert layout.reference(2, "previous") == layout.model(1)
    for step in ("sample", "score", "pairs"):
        rlip(compose("rlip", [*overrides(tmp), "rlip.run=single", "tracking.uri=null", "rlip.iteration=1",
                              f"rlip.step={step}"]))
        assert layout.marker(1, step).is_file()
    assert not layout.marker(1, "update").exists()
    pairs = json.loads(layout.marker(1, "pairs").read_text())
    assert set(pairs["tiers"]) <= {"unconditional", "sg1", "sg15"}
    with pytest.raises(UserError, match="rlip.step: 'bogus' is not one of"):
        compose("rlip", [*overrides(tmp), "rlip.run=single", "rlip.iteration=1", "rlip.step=bogus"])
    # collecting an unfinished run is refused and says what is missing
    with pytest.raises(UserError, match="iteration 0 has not finished evaluate"):
        rlip(compose("rlip", [*overrides(tmp), "rlip.run=single", "tracking.uri=null", "rlip.step=collect"]))


def test_rlip_refuses_a_model_trained_on_another_representation(tmp):
    """generator.repr must reach RLIP: a Wyckoff model asked for coords text is refused in one line."""
    cfg = compose("rlip", [*overrides(tmp), "rlip.run=repr", "tracking.uri=null", "repr=coords", "rlip.iteration=1",
                           "rlip.step=sample"])
    with pytest.raises(UserError, match="trained on 'wyckoff' text, not 'coords'"):
        rlip(cfg)
