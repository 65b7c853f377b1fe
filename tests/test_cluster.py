"""Leaving one machine through existing engines: a Hydra sweep through the submitit launcher."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from plaidpp.config import PROJECT_ROOT

from .conftest import few_site_rows, shrunk_overrides


@pytest.mark.slow
def test_an_evaluate_sweep_runs_as_two_submitit_jobs_and_leaves_both_summaries(tmp_path, mp20_rows):
    """`plaidpp evaluate -m hydra/launcher=submitit_local mlip=chgnet,sevennet`: two jobs (processes submitit
    starts and waits for), one summary per potential, each judged by its own potential."""
    small = mp20_rows[mp20_rows["split"] == "test"].sample(40, random_state=5)
    small = few_site_rows(small, 2)
    folder = tmp_path / "generated"
    folder.mkdir()
    for k, cif in enumerate(small["cif"]):
        (folder / f"c{k}.cif").write_text(cif)
    cmd = [sys.executable, "-m", "plaidpp.cli", "evaluate", "-m", "hydra/launcher=submitit_local",
           f"hydra.sweep.dir={tmp_path / 'multirun'}", "mlip=chgnet,sevennet", f"samples={folder}",
           f"out={tmp_path}/eval/${{mlip.name}}", "relax.steps=20", "progress=false",
           *shrunk_overrides("evaluate", tmp_path)]
    result = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    summaries = {name: json.loads((tmp_path / "eval" / name / "summary.json").read_text())
                 for name in ("chgnet", "sevennet")}
    assert {s["n_requested"] for s in summaries.values()} == {2}
    assert {name: s["mlip"].split(":")[0] for name, s in summaries.items()} == {"chgnet": "chgnet", "sevennet": "sevennet"}
    jobs = [d for d in (tmp_path / "multirun" / ".submitit").iterdir() if d.name.isdigit()]  # and its %j template
    assert len(jobs) == 2 and all(list(d.glob("*_result.pkl")) for d in jobs)  # one finished job per point


@pytest.mark.slow
def test_an_rlip_sweep_runs_one_submitit_job_per_schedule(tmp_path, tiny_model_dir):
    """`plaidpp rlip -m hydra/launcher=submitit_local schedule=flagship,constant`: one job per schedule, each in
    its own run folder (named by its overrides), here doing iteration 1's rollout step with a tiny model."""
    import shutil

    from .test_rlip_loop import overrides

    shutil.copytree(tiny_model_dir, tmp_path / "pi0")
    shared = [o for o in overrides(tmp_path) if not o.startswith(("rlip.run=", "tracking."))]
    cmd = [sys.executable, "-m", "plaidpp.cli", "rlip", "-m", "hydra/launcher=submitit_local",
           f"hydra.sweep.dir={tmp_path / 'multirun'}", "schedule=flagship,constant", "rlip.iteration=1",
           "rlip.step=sample", "tracking.uri=null", *shared]
    result = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    samples = sorted(tmp_path.glob("**/iter_1/**/samples.jsonl"))
    runs = sorted({path.relative_to(tmp_path / "data" / "rlip").parts[0] for path in samples})
    # too many overrides for a file name: the group choices and a hash of them all (rlip.layout._sweep_name)
    assert len(runs) == 2 and all(len(run) <= 120 for run in runs), runs
    assert [run.split(",")[-1].split("-")[0] for run in runs] == ["schedule=constant", "schedule=flagship"], runs
    for path in samples:  # every rollout slot finished (6 unconditional + 2 x 2 space-group prompts)
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert sorted(r["index"] for r in rows if r["final"]) == list(range(10))
    jobs = [d for d in (tmp_path / "multirun" / ".submitit").iterdir() if d.name.isdigit()]
    assert len(jobs) == 2 and all(list(d.glob("*_result.pkl")) for d in jobs)
