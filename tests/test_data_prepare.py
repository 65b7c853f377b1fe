"""The prepare stage on a slice of the vendored rows: JSONL, metrics, cache, token statistics."""

from __future__ import annotations

import json

import pytest

from plaidpp.data import prepare as prepare_module
from plaidpp.representation import get


@pytest.fixture
def small_cfg(make_config):
    return make_config("prepare", "data.max_rows_per_split=12")


def test_prepare_writes_jsonl_and_metrics_then_reuses_its_cache(small_cfg, tmp_path, monkeypatch):
    metrics = prepare_module.prepare(small_cfg)
    for representation in ("wyckoff", "coords"):
        lines = (tmp_path / "data" / "processed" / representation / "train.jsonl").read_text().splitlines()
        assert len(lines) == metrics["splits"]["train"][representation]["encoded"] >= 11
        record = json.loads(lines[0])
        assert {"material_id", "text", "formula", "spacegroup", "n_sites", "properties", "cif"} <= set(record)
        # the text in the file decodes to a crystal with the recorded number of sites
        assert len(get(representation).decode(record["text"])) % record["n_sites"] == 0
    on_disk = json.loads((tmp_path / "metrics" / "prepare.json").read_text())
    assert set(on_disk["splits"]) == set(small_cfg.splits)  # what the pipeline reads (params: data.train_splits)
    assert on_disk["totals"]["wyckoff"]["rows"] == 12 * len(small_cfg.splits)
    tokens = on_disk["tokens_per_crystal_qwen2.5"]
    assert 30 < tokens["wyckoff"] < tokens["coords"] < 600  # Wyckoff is the compact one, as in the paper

    # Second run: every encoding comes from the cache, so the encoder must not be called at all.
    def fail(task):
        raise AssertionError("encode_row called although the result was cached")

    monkeypatch.setattr(prepare_module, "encode_row", fail)
    again = prepare_module.prepare(small_cfg)
    assert again["totals"] == metrics["totals"]
    failures = (tmp_path / "data" / "processed" / "failures.csv").read_text().splitlines()
    assert failures[0] == "split,material_id,formula,spacegroup_mp,repr,reason,detail"
    n_failed = sum(sum(t["failures"].values()) for t in metrics["totals"].values())
    assert len(failures) - 1 == n_failed


def test_unencodable_rows_are_counted_not_fatal():
    assert prepare_module.encode_row(("wyckoff", "not a cif"))["status"] == "cif_unreadable"
    disordered = """data_x
_cell_length_a 4
_cell_length_b 4
_cell_length_c 4
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_type_symbol
_atom_site_label
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Fe Fe1 0 0 0 0.5
Ni Ni1 0 0 0 0.5
"""
    assert prepare_module.encode_row(("wyckoff", disordered))["status"] == "disordered"


def test_space_group_conditioning_uses_the_group_the_text_carries(small_cfg, tmp_path):
    prepare_module.prepare(small_cfg)
    for line in (tmp_path / "data" / "processed" / "wyckoff" / "val.jsonl").read_text().splitlines():
        record = json.loads(line)
        decoded = get("wyckoff").decode(record["text"])
        assert record["properties"]["spacegroup"] == record["spacegroup"] == decoded.properties["spacegroup_number"]
