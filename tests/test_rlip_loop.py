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

from plaidpp.config import compose
from plaidpp.prompts import spacegroup_prompt, unconditional_prompt
from plaidpp.rlip.loop import Layout, rlip
from plaidpp.training.models import build_tiny_model
from plaidpp.training.tokenizer import train_crystal_tokenizer

ROOT = Path(__file__).resolve().parents[1]
CRYSTAL = ("Na4Cl4\nSpacegroup: Fm-3m\nabc: 5.69 5.69 5.69\nangles: 90.00 90.00 90.00\nSites (8)\n"
           "Na 0.000 0.000 0.000 4a\nCl 0.500 0.500 0.500 4b")


def overrides(tmp: Path) -> list[str]:
    return [
        f"rlip.init_model={tmp}/pi0", f"rlip.data_dir={tmp}/data", f"rlip.models_dir={tmp}/models",
        f"rlip.metrics_file={tmp}/rlip.json", f"tracking.uri=sqlite:///{tmp}/mlflow.db", "tracking.experiment=t",
        "rollout.n_unconditional=6", "rollout.n_per_group=2", "rollout.groups=[1,15]", "rollout.max_new_tokens=24",
        "rollout.max_attempts=2", "rollout.batch_size=4", "evaluation.n_unconditional=2", "evaluation.n_per_group=1",
        'reward.overrides=["novelty.enabled=false"]', 'evaluation.overrides=["novelty.enabled=false"]',
        f"paths.cache={tmp}/cache", "workers=1", "rlip.run=t",
    ]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    root = tmp_path_factory.mktemp("rlip")
    tokenizer = train_crystal_tokenizer([CRYSTAL, unconditional_prompt(), spacegroup_prompt(15)], vocab_size=280)
    cfg = compose("rlip", ["model.architecture.hidden_size=32", "model.architecture.intermediate_size=64",
                           "model.architecture.num_hidden_layers=1", "model.architecture.num_attention_heads=2",
                           "model.architecture.num_key_value_heads=1"])
    model = build_tiny_model(cfg.model, tokenizer)
    model.save_pretrained(root / "pi0")
    tokenizer.save_pretrained(root / "pi0")
    (root / "pi0" / "training_data.json").write_text("{}")
    return root


def _final_indices(path: Path) -> list[int]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted(r["index"] for r in rows if r["final"])


@pytest.mark.slow
def test_kill_mid_sampling_then_resume_to_the_end(tmp):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "plaidpp.cli", "rlip", *overrides(tmp), "rollout.n_unconditional=400",
           "rollout.batch_size=2", "rollout.max_attempts=1"]
    samples = tmp / "data" / "t" / "iter_1" / "samples.jsonl"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and (not samples.exists() or len(samples.read_text().splitlines()) < 6):
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        time.sleep(0.05)  # 404 samples take seconds on a fast CPU: poll finely so the kill lands mid-way
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp / "data" / "t" / "iter_1" / "sample.done.json").exists()
    n_before = len(_final_indices(samples))
    assert 0 < n_before < 404

    # the same run, resumed in-process with the full overrides: nothing lost, nothing duplicated
    cfg = compose("rlip", [*overrides(tmp), "rollout.n_unconditional=400", "rollout.batch_size=2",
                           "rollout.max_attempts=1"])
    summary = rlip(cfg)
    assert _final_indices(samples) == list(range(404))
    assert summary["iterations"]["1"]["temperature"] == pytest.approx(0.7)
    layout = Layout(cfg)
    for i in (1, 2):
        for step in ("sample", "score", "pairs", "update", "evaluate"):
            assert layout.marker(i, step).is_file(), (i, step)
        assert (layout.model(i) / "config.json").is_file()
        assert (layout.model(i) / "training_data.json").is_file()  # SFT side files carried forward
    assert layout.marker(0, "evaluate").is_file()
    update2 = json.loads(layout.marker(2, "update").read_text())
    assert update2["policy"] == str(layout.model(1)) and update2["reference"] == str(layout.model(1))

    # a finished run re-runs as a no-op (every step skipped), files untouched
    stamp = samples.stat().st_mtime_ns
    rlip(cfg)
    assert samples.stat().st_mtime_ns == stamp

    metrics = json.loads((tmp / "rlip_runs" / "t.json").read_text())  # a named run writes beside metrics_file
    assert set(metrics["iterations"]) == {"0", "1", "2"}
    assert metrics["reward_mlip"] == "chgnet" and metrics["eval_mlip"] == "sevennet"

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["t"])
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    children = runs[runs["tags.mlflow.parentRunId"].notna()]
    assert len(parents) == 1  # the killed and resumed invocations share one parent run
    assert sorted(children["tags.iteration"]) == ["0", "1", "2"]
    assert "metrics.temperature" in children.columns


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
    with pytest.raises(Exception, match="rlip.step"):
        rlip(compose("rlip", [*overrides(tmp), "rlip.run=single", "tracking.uri=null", "rlip.step=bogus"]))
