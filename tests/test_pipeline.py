"""dvc.yaml, params.yaml and conf/ cannot drift: the graph is regenerated and compared, every stage is composed
as DVC runs it, and real `dvc status` calls show a changed setting re-running exactly the stages it reaches."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from plaidpp.config import PROJECT_ROOT, compose_dict, knobs
from plaidpp.errors import UserError
from plaidpp.pipeline import check, render

DVC = [sys.executable, "-m", "dvc"]


def _resolved_stages(root: Path = PROJECT_ROOT) -> dict:
    """dvc.yaml as DVC itself resolves it (templates filled from params.yaml)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return {s.name: {"cmd": s.cmd, "deps": [d.def_path for d in s.deps if not str(d.def_path).endswith(
                "params.yaml")], "params": sorted(k for p in s.params for k in p.params),
                "outs": [o.def_path for o in s.outs]} for s in repo.index.stages}


def test_committed_dvc_yaml_is_what_params_conf_and_code_imply():
    check()  # raises a one-line UserError naming the first differing line


def test_a_stale_dvc_yaml_is_one_line_and_says_how_to_fix_it(tmp_path):
    stale = tmp_path / "dvc.yaml"
    stale.write_text(render().replace("rlip_iter2_", "rlip_iterX_"))
    with pytest.raises(UserError, match=r"out of date .* run `plaidpp pipeline`"):
        check(stale)


def test_every_stage_composes_as_dvc_runs_it_and_depends_on_what_hydra_loads():
    """Independent of the generator: parse each resolved cmd, compose it, and look at Hydra's own record of the
    presets it chose; each must be a dep of the stage, and every params.yaml knob feeding it a tracked param."""
    from plaidpp.cli import _flags_to_overrides

    stages = _resolved_stages()
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    assert any(name.startswith("rlip_iter0_evaluate") for name in stages)
    assert sum(name.endswith("_sample") for name in stages) == params["rlip"]["iterations"]
    for name, stage in stages.items():
        argv = shlex.split(stage["cmd"])
        assert argv[0] == "plaidpp", name
        command, overrides = argv[1], _flags_to_overrides(argv[1], argv[2:])
        cfg, _ = compose_dict(command, overrides, return_hydra_config=True)
        step = next((o.split("=")[1] for o in overrides if o.startswith("rlip.step=")), None)
        if step is None or step in ("sample", "evaluate", "update"):  # the steps that read the model preset
            if "model" in cfg.hydra.runtime.choices:
                assert f"conf/model/{cfg.hydra.runtime.choices['model']}.yaml" in stage["deps"], name
        assert f"conf/{command}.yaml" in stage["deps"], name
        for knob in knobs(command):
            feeds_step = step is None or knob.param in stage["params"]
            if step is None and command != "rlip":
                assert knob.param in stage["params"], (name, knob.param)
            assert feeds_step or step is not None
        if command == "evaluate":
            assert f"conf/mlip/{params['evaluate']['mlip']}.yaml" in stage["deps"]
    # the reward potential's preset is a dep of every step it scores in (rollouts, the audit), and only of those
    reward = f"conf/mlip/{params['rlip']['reward_mlip']}.yaml"
    assert sorted(n for n, s in stages.items() if reward in s["deps"]) == sorted(
        n for n in stages if n.endswith(("_score", "_audit")))
    # generator.repr reaches every RLIP step that samples
    assert all("generator.repr" in stages[n]["params"] for n in stages if n.endswith(("_sample", "_evaluate"))
               and n.startswith("rlip"))


def _dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*DVC, *args], cwd=root, capture_output=True, text=True, timeout=300)


@pytest.fixture
def repo_copy(tmp_path):
    """The project's DVC inputs in a scratch folder (no git), with lock entries for two RLIP steps whose
    outputs and upstream files are stand-ins: `dvc status` then says exactly what a change would re-run."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("src", "conf", "data/raw", ".dvc"):
        shutil.copytree(PROJECT_ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    assert _dvc(root, "config", "core.no_scm", "true").returncode == 0
    stages = _resolved_stages(root)
    for name in ("rlip_iter1_score", "rlip_iter1_evaluate", "rlip_iter1_sample"):
        for path in [*stages[name]["deps"], *stages[name]["outs"]]:
            target = root / path
            if not target.exists():  # an upstream output or this stage's own: a stand-in file or folder
                if Path(path).suffix:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text("{}")
                else:
                    target.mkdir(parents=True)
                    (target / "stand-in").write_text("x")
        done = _dvc(root, "commit", "-f", name)
        assert done.returncode == 0, done.stderr
    return root


def _changed(root: Path) -> dict:
    result = _dvc(root, "status", "rlip_iter1_score", "rlip_iter1_evaluate", "rlip_iter1_sample", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout or "{}")


def test_changing_the_reward_potential_reruns_reward_scoring_only(repo_copy):
    assert _changed(repo_copy) == {}
    preset = repo_copy / "conf" / "mlip" / "chgnet.yaml"  # params.yaml rlip.reward_mlip
    preset.write_text(preset.read_text() + "device: cuda\n")
    changed = _changed(repo_copy)
    assert set(changed) == {"rlip_iter1_score"}
    assert changed["rlip_iter1_score"] == [{"changed deps": {"conf/mlip/chgnet.yaml": "modified"}}]


def test_the_representation_knob_reaches_the_rlip_sampling_steps(repo_copy):
    params = repo_copy / "params.yaml"
    params.write_text(params.read_text().replace("repr: wyckoff", "repr: coords"))
    changed = _changed(repo_copy)
    assert set(changed) == {"rlip_iter1_sample", "rlip_iter1_evaluate"}
    for name in changed:
        assert changed[name] == [{"changed deps": {"params.yaml": {"generator.repr": "modified"}}}]
