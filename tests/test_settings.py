"""Every setting has one typed, documented home, and a bad one stops a command in one line before any work."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from plaidpp.cli import main
from plaidpp.config import PROJECT_ROOT, compose, compose_dict, knobs
from plaidpp.settings import STAGE_CONFIGS, PipelineParams, leaf_fields

CONF = PROJECT_ROOT / "conf"


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_every_setting_is_typed_and_documented():
    for cls in [*STAGE_CONFIGS.values(), PipelineParams]:
        for key, f, kind in leaf_fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{key} has no help text"
            assert kind is not typing.Any, f"{cls.__name__}.{key} is untyped"
    # a unit wherever the name says there is one
    for cls in STAGE_CONFIGS.values():
        for key, f, _ in leaf_fields(cls):
            if key.endswith("_s"):
                assert f.metadata.get("unit") == "s", key


def test_help_lists_every_setting_with_its_value(capsys):
    assert main(["sample", "--help", "temperature=1.1"]) == 0
    out = capsys.readouterr().out
    keys = [k for k, _, _ in leaf_fields(STAGE_CONFIGS["sample"])]
    for key in keys:
        assert re.search(rf"^.{re.escape(key)} = ", out, flags=re.M), key
    assert re.search(r"^ temperature = 1.1  \[> 0\]$", out, flags=re.M)  # the command line's, not params.yaml's
    assert re.search(r"^\*prompts.n_unconditional = ", out, flags=re.M)  # a params.yaml knob, marked
    assert "nucleus sampling mass" in out and "[> 0, <= 1]" in out  # help and bounds of sampler.top_p
    assert main(["config", "evaluate", "--samples", "x", "--out", "y"]) == 0
    assert "relax.fmax = 0.02  [eV/Å" in capsys.readouterr().out


def _group_schemas() -> dict[str, type]:
    """conf/<group>/ -> the settings class its presets fill."""
    out = {}
    for cls in STAGE_CONFIGS.values():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if (CONF / f.name).is_dir() and dataclasses.is_dataclass(hints[f.name]):
                out[f.name] = hints[f.name]
    return out


def _defaults(cls: type) -> dict[str, typing.Any]:
    values = {}
    for key, f, _ in leaf_fields(cls):
        if f.default is not dataclasses.MISSING:
            values[key] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            values[key] = f.default_factory()  # type: ignore[misc]
    return values


def _leaves(data: dict, prefix: str = "") -> dict[str, typing.Any]:
    out = {}
    for key, value in (data or {}).items():
        if isinstance(value, dict) and value:
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_presets_under_conf_state_only_what_differs_from_the_dataclass():
    schemas = _group_schemas()
    assert {"mlip", "hull", "model", "train", "dpo", "pairs", "schedule", "data"} <= set(schemas)
    for group, cls in schemas.items():
        defaults = _defaults(cls)
        for preset in sorted((CONF / group).glob("*.yaml")):
            for key, value in _leaves(yaml.safe_load(preset.read_text())).items():
                default = defaults.get(key, dataclasses.MISSING)
                assert value != default or key == "name", f"{preset.relative_to(PROJECT_ROOT)}: {key} repeats the default"


def test_every_mlip_preset_is_a_choice_of_the_knobs_that_name_one():
    from plaidpp.settings.evaluation import MLIP_PRESETS

    assert sorted(MLIP_PRESETS) == sorted(p.stem for p in (CONF / "mlip").glob("*.yaml"))


def test_pipeline_knobs_live_only_in_params_yaml():
    """conf/ never sets what params.yaml feeds: composed without params.yaml, every knob's target is unset."""
    from plaidpp.errors import UserError

    for stage in STAGE_CONFIGS:
        feeds = knobs(stage)
        if not feeds:
            continue
        groups = [k for k in feeds if k.group]
        values = [k for k in feeds if not k.group]
        # with every group choice given explicitly, the value knobs must still be missing
        chosen = [f"{k.target}={k.value}" for k in groups]
        cfg, added = compose_dict(stage, chosen, use_params=False)
        from omegaconf import OmegaConf

        for knob in values:
            parent, _, leaf = knob.target.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            assert OmegaConf.is_missing(node, leaf), f"conf/ sets {knob.target} of {stage} (params.yaml {knob.param})"
        for knob in groups:  # and no group choice is made in conf/
            others = [c for c in chosen if not c.startswith(f"{knob.target}=")]
            with pytest.raises(UserError, match=f"choose {knob.target}="):
                compose_dict(stage, others, use_params=False)


@pytest.mark.parametrize(("override", "says"), [
    ("temperature=-1", "temperature: -1.0 must be > 0"),
    ("sampler.top_p=2", "sampler.top_p: 2.0 must be <= 1"),
    ("prompts.n_unconditional=-5", "prompts.n_unconditional: -5 must be >= 0"),
    ("prompts.spacegroups=[1,999]", "prompts.spacegroups: 999 must be <= 230"),
    ("temperature=hot", "temperature=hot: 'hot' is not a float"),
    ("workers=abc", "workers=abc: 'abc' is not an integer"),
    ("sampler.batch_size=0", "sampler.batch_size: 0 must be >= 1"),
    ("sampler.engine=vllm2", "sampler.engine: 'vllm2' is not one of compact, hf"),
    ("sampler.tempreature=1", "unknown setting sampler.tempreature (did you mean temperature?)"),
])
def test_a_bad_value_is_one_line_and_status_2_before_the_model_is_loaded(override, says, capsys, tmp_path):
    # model_dir does not exist: reaching the stage would fail with "no model at"
    err = _one_line_error(capsys, ["sample", f"model_dir={tmp_path}/none", "tracking.uri=null", override])
    assert says in err and "no model" not in err


def test_a_misspelled_key_in_a_conf_file_stops_evaluate_naming_it(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    judge = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["evaluate"]["mlip"]
    preset = conf / "mlip" / f"{judge}.yaml"  # the evaluation potential params.yaml chooses
    preset.write_text(re.sub(r"^model:", "modle:", preset.read_text(), flags=re.M))
    env = {**os.environ, "PLAIDPP_CONF": str(conf)}
    proc = subprocess.run([sys.executable, "-m", "plaidpp.cli", "evaluate", "--samples", "x.jsonl", "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"plaidpp: error: conf/mlip/{judge}.yaml: unknown setting mlip.modle "
                                   "(did you mean mlip.model?)")


def test_a_misspelled_key_in_params_yaml_stops_any_stage(tmp_path, capsys, monkeypatch):
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["sample"]["temprature"] = params["sample"].pop("temperature")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    monkeypatch.setenv("PLAIDPP_PARAMS", str(path))
    err = _one_line_error(capsys, ["prepare"])
    assert f"{path}: unknown setting sample.temprature (did you mean sample.temperature?)" in err
    params["sample"]["temperature"] = 0
    del params["sample"]["temprature"]
    path.write_text(yaml.safe_dump(params))
    assert "sample.temperature: 0.0 must be > 0" in _one_line_error(capsys, ["prepare"])


def test_knobs_reach_every_stage_that_uses_them():
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    assert compose("rlip").repr == params["generator"]["repr"]
    assert compose("rlip").rlip.iterations == params["rlip"]["iterations"]
    judge = params["evaluate"]["mlip"]  # a conf/mlip preset name; mlip.name is its backend
    assert compose("rlip").evaluation.mlip == params["rlip"]["eval_mlip"]  # the RLIP loop has its own judge
    assert compose("rlip").evaluation.endpoint_unconditional == params["rlip"]["eval_endpoint_unconditional"]
    assert compose("prepare").splits == params["data"]["train_splits"]  # prepare encodes what is read
    assert compose("evaluate", ["samples=x", "out=y"]).mlip == compose("evaluate", ["samples=x", "out=y",
                                                                                  f"mlip={judge}"]).mlip
    assert compose("sample").temperature == compose("rlip").evaluation.temperature == params["sample"]["temperature"]
    # the command line and an experiment outrank params.yaml
    assert compose("rlip", ["repr=coords"]).repr == "coords"
    assert compose("rlip", ["+experiment=rlip_coords"]).repr == "coords"
    assert compose("rlip", ["+experiment=rlip_paper"]).model.name == "qwen2.5-7b"


def test_encode_and_decode_refuse_binary_files_and_broken_cells_in_one_line(tmp_path, mp20_sample):
    binary = tmp_path / "x.cif"
    binary.write_bytes(bytes(range(256)))
    nan_cell = tmp_path / "nan.cif"
    nan_cell.write_text(re.sub(r"(_cell_length_a\s+)\S+", r"\1nan", mp20_sample(1, seed=3)["cif"].iloc[0]))
    for argv, says in ((["encode", str(binary)], "not a text file"), (["decode", str(binary)], "not a text file"),
                       (["encode", str(nan_cell)], "bad_lattice")):  # spglib segfaults on a NaN cell
        proc = subprocess.run([sys.executable, "-m", "plaidpp.cli", *argv], capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr


def test_paths_in_settings_say_whether_a_stage_reads_or_writes_them():
    """The DVC graph takes deps and outs from these marks; every file-like setting carries one or is a cache."""
    for stage, cls in STAGE_CONFIGS.items():
        for key, f, _ in leaf_fields(cls):
            name = key.rpartition(".")[2]
            if name in ("samples", "out", "out_dir", "out_file", "model_dir", "metrics_file", "scored", "policy",
                        "pairs_file", "init_model", "structures", "table", "elemental_refs") or key == "novelty.reference":
                assert f.metadata.get("path"), f"{stage}: {key} does not say whether it is read or written"


def test_no_setting_is_read_with_a_fallback_default():
    """`.get(key, default)` on a config would re-supply a default and hide a typo; none is left in the code."""
    pattern = re.compile(r"cfg[\w.]*\.get\(|_cfg_get\(|OmegaConf\.select\(cfg")
    offenders = [f"{p.relative_to(PROJECT_ROOT)}:{n}" for p in (PROJECT_ROOT / "src" / "plaidpp").rglob("*.py")
                 for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)
                 and p.name != "config.py"]
    assert offenders == []


def test_settings_tables_render_for_every_stage():
    from plaidpp.config import settings_table

    for stage in STAGE_CONFIGS:
        extra = {"evaluate": ["samples=x", "out=y"], "pairs": ["scored=[x]", "out=y"],
                 "dpo": ["policy=x", "pairs_file=y", "out=z"]}.get(stage, [])
        table = settings_table(stage, extra)
        assert table.count("\n") > 10 and Path(table.splitlines()[0]).name
