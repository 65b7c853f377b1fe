"""End to end: samples JSONL -> evaluate -> structures.parquet + summary.json (+ MLflow), real CHGNet."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from pymatgen.core import Structure

from plaidpp.config import PROJECT_ROOT, compose
from plaidpp.evaluation.score import score_samples
from plaidpp.evaluation.evaluate import evaluate
from plaidpp.representation import get

from .conftest import few_site_rows, shrunk_overrides

CSV = PROJECT_ROOT / "data/raw/mp20/mp20_partial_merged.csv.gz"


def _cfg(tmp_path, *extra, tracking=False):
    """The real evaluate config, shrunk: CHGNet, short relaxations, the vendored train rows as the reference."""
    return compose("evaluate", shrunk_overrides("evaluate", tmp_path, [
        "samples=unused", "out=unused", "mlip=chgnet", f"novelty.reference=[{CSV}]", "progress=false",
        "relax.steps=40", "relax.fmax=0.1", "hull=mp20_fallback", *extra], tracking=tracking))


@pytest.fixture(scope="module")
def samples(mp20_rows):
    """Real crystals as Wyckoff text plus hand-made broken ones; each broken row names its expected reason."""
    enc = get("wyckoff")
    test = mp20_rows[mp20_rows["split"] == "test"]
    pool = test.sample(80, random_state=1)  # parse a few, not all 7,342
    small = few_site_rows(pool, 3)
    assert len(small) == 3
    train_pool = mp20_rows[mp20_rows["split"] == "train"].sample(40, random_state=2)
    train_row = few_site_rows(train_pool, 1).iloc[0]
    rows = []
    for cif, sg in zip(small["cif"], small["spacegroup.number"], strict=True):
        rows.append({"text": enc.encode(Structure.from_str(cif, fmt="cif")), "repr": "wyckoff",
                     "spacegroup": int(sg), "prompt": "p", "expect": None})
    rows.append({**rows[0], "expect": None})  # duplicate of row 0
    rows.append({"text": enc.encode(Structure.from_str(train_row["cif"], fmt="cif")), "spacegroup": None,
                 "expect": None, "known": True})
    nacl = "Na4Cl4\nSpacegroup: Fm-3m\nabc: 5.69 5.69 5.69\nangles: 90.00 90.00 90.00\nSites (8)\n"
    rows += [
        {"text": "not a crystal", "spacegroup": None, "expect": "parse:syntax"},
        {"text": nacl + "Na 0.000 0.000 0.000 4a\nCl 0.050 0.000 0.000 8j", "spacegroup": 225,
         "expect": "parse:multiplicity_mismatch"},
        # Na on 4a and Cl on 4a too: every Cl sits on a Na -> overlapping atoms
        {"text": nacl + "Na 0.000 0.000 0.000 4a\nCl 0.000 0.000 0.000 4a", "spacegroup": None,
         "expect": "invalid_structure:overlapping_atoms"},
        {"text": "Na1Cl1\nSpacegroup: P1\nabc: 90.00 90.00 90.00\nangles: 90.00 90.00 90.00\nSites (2)\n"
                 "Na 0.000 0.000 0.000 1a\nCl 0.500 0.500 0.500 1a", "spacegroup": None,
         "expect": "invalid_structure:volume_out_of_range"},
        {"text": nacl.replace("Na4", "Po4") + "Po 0.000 0.000 0.000 4a\nCl 0.500 0.500 0.500 4b",
         "spacegroup": None, "expect": "element_not_in_hull", "detail": "Po"},
        {"text": nacl.replace("Na4", "Am4") + "Am 0.000 0.000 0.000 4a\nCl 0.500 0.500 0.500 4b",
         "spacegroup": None, "expect": "element_not_in_mlip", "detail": "Am"},
    ]
    return rows


def test_score_samples_counts_every_failure_and_divides_by_all_requested(tmp_path, samples):
    table, summary = score_samples(samples, _cfg(tmp_path))
    n = len(samples)
    assert summary["n_requested"] == n == len(table)
    for row, reason, detail in zip(samples, table["fail_reason"], table["fail_detail"], strict=True):
        assert (None if pd.isna(reason) else reason) == row["expect"], (row["text"][:40], reason)
        if "detail" in row:  # the reason is a fixed category; which element is its detail
            assert detail == row["detail"]
    assert summary["failure_reasons"]["parse:syntax"] == 1
    assert sum(summary["failure_reasons"].values()) == sum(r["expect"] is not None for r in samples)
    # every rate is a count over n_requested (conditional rates over rows with a requested space group)
    for key, column in [("validity_structural", "valid_structure"), ("stability_rate", "is_stable"),
                        ("novelty_rate", "is_novel"), ("uniqueness_rate", "is_unique"), ("sun_rate", "is_sun")]:
        assert summary[key] == pytest.approx(table[column].sum() / n)
    n_cond = sum(r["spacegroup"] is not None for r in samples)
    assert summary["n_conditional"] == n_cond
    assert summary["ssun_rate"] == pytest.approx(table["is_ssun"].sum() / n_cond)
    # the real crystals relax and land near the hull; the duplicate is not unique; the train crystal not novel
    real = table.iloc[:5]
    assert real["relax_ok"].all() and (real["e_hull"].abs() < 0.25).all()
    assert list(table["is_unique"].iloc[:4]) == [True, True, True, False]
    assert bool(table["is_novel"].iloc[4]) is False and table["is_novel"].iloc[:3].all()
    assert not table["is_sun"].iloc[3]  # a duplicate never counts twice
    assert (table.loc[table["spacegroup_match"], "spacegroup_achieved"]
            == table.loc[table["spacegroup_match"], "spacegroup_requested"]).all()
    # the real crystals, requested with their own MP space group, are generated in it (before relaxation)
    assert table["spacegroup_generated_match"].iloc[:4].all()
    assert table["spacegroup_generated"].iloc[4:].isna().all()  # unconditional or unparsed: not checked
    assert summary["spacegroup_accuracy_generated"] == pytest.approx(table["spacegroup_generated_match"].sum() / n_cond)
    assert set(summary["per_spacegroup"]) == {str(int(r["spacegroup"])) for r in samples if r["spacegroup"]}
    assert summary["hull_source"] == "mp20_fallback" and "OFFLINE MP-20-only hull" in summary["hull_warning"]
    for key in ("n_parsed", "validity_composition", "metastability_rate", "denominators", "unaries",
                "novelty_reference_sha256"):
        assert key in summary


def test_attempt_files_keep_final_rows_and_report_the_attempt_parse_rate(tmp_path, samples):
    good = samples[0]
    rows = [
        {"index": 0, "attempt": 0, "text": "garbage", "decoded": False, "final": False},
        {"index": 0, "attempt": 1, "text": good["text"], "decoded": True, "final": True},
        {"index": 1, "attempt": 0, "text": "garbage", "decoded": False, "final": False},
        {"index": 1, "attempt": 1, "text": "garbage", "decoded": False, "final": True},
    ]
    table, summary = score_samples(rows, _cfg(tmp_path, "novelty.enabled=false"))
    assert list(table["index"]) == [0, 1]
    assert summary["n_requested"] == 2 and summary["n_attempts"] == 4
    assert summary["attempt_parse_rate"] == pytest.approx(0.25) and summary["parse_rate"] == pytest.approx(0.5)


def test_evaluate_writes_outputs_logs_mlflow_and_resumes_from_the_cache(tmp_path, samples):
    path = tmp_path / "samples.jsonl"
    rows = [dict(r) for r in samples]
    rows[0]["meta"] = {"temperature": 0.7, "tags": ["a"]}  # nested pass-through values survive as JSON text
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "eval"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = _cfg(tmp_path, f"samples={path}", f"out={out}", tracking=True)
    summary = evaluate(cfg)
    table = pd.read_parquet(out / "structures.parquet")
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["n_requested"] == summary["n_requested"] == len(table) == len(samples)
    for column in ("index", "text", "repr", "prompt", "spacegroup_requested", "parse_ok", "parse_reason",
                   "valid_structure", "valid_composition", "relax_ok", "fail_reason", "energy_per_atom",
                   "e_form_per_atom", "e_hull", "spacegroup_achieved", "is_stable", "is_metastable",
                   "is_unique", "is_novel", "is_sun", "is_ssun", "formula", "cif_relaxed"):
        assert column in table.columns, column
    assert json.loads(table["meta"].iloc[0]) == rows[0]["meta"] and table["prompt"].iloc[0] == "p"
    import mlflow

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["plaidpp"])
    assert len(runs) == 1 and runs["metrics.sun_rate"].iloc[0] == pytest.approx(summary["sun_rate"])
    # a second run (e.g. after a kill) relaxes nothing again
    again = evaluate(_cfg(tmp_path, f"samples={path}", f"out={out}"))
    assert again["n_relax_cached"] == summary["n_relaxed"] + summary["failure_kinds"].get("energy_nan", 0)
    assert again["sun_rate"] == summary["sun_rate"]


def test_cli_evaluate_reports_user_errors_in_one_line(tmp_path):
    env = {**os.environ, "PLAIDPP_ROOT": str(tmp_path)}
    missing = subprocess.run([sys.executable, "-m", "plaidpp.cli", "evaluate", f"samples={tmp_path}/none.jsonl",
                              f"out={tmp_path}/o"], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT)
    assert missing.returncode == 2 and "samples not found" in missing.stderr


def test_a_sample_asking_for_a_space_group_that_does_not_exist_is_refused(tmp_path, samples):
    """Silently treating spacegroup 999 as unconditional would change n_conditional and S.S.U.N."""
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps(samples[0]) + "\n" + json.dumps({**samples[1], "spacegroup": 999}) + "\n")
    from plaidpp.cli import main

    import io
    from contextlib import redirect_stderr

    err = io.StringIO()
    with redirect_stderr(err):
        status = main(["evaluate", "--samples", str(path), "--out", str(tmp_path / "o"), "mlip=chgnet",
                       f"paths.root={tmp_path}", "tracking.uri=null"])
    assert status == 2 and err.getvalue().count("\n") == 1
    assert "samples.jsonl:2: spacegroup 999 is not a space-group number" in err.getvalue()
    assert not (tmp_path / "o").exists()  # refused before any work


def test_a_composition_that_would_hang_smact_is_a_counted_timeout(tmp_path):
    elements = ["Li", "Na", "K", "Rb", "Cs", "Fe", "Co", "Ni", "Cu", "Mn", "O", "S", "Se"]
    lines = [f"{el} {i / 13:.3f} {(i * 5 % 13) / 13:.3f} {(i * 7 % 13) / 13:.3f} 1a" for i, el in enumerate(elements)]
    text = "".join(elements) + "\nSpacegroup: P1\nabc: 9.00 9.00 9.00\nangles: 90.00 90.00 90.00\nSites (13)\n"
    text += "\n".join(lines)
    table, summary = score_samples([{"text": text}], _cfg(tmp_path, "relax.enabled=false", "novelty.enabled=false",
                                                          "validity.smact_time_limit_s=0.5"))
    assert table["parse_ok"].iloc[0] and table["valid_structure"].iloc[0]
    assert not table["valid_composition"].iloc[0]
    assert summary["composition_check_failures"] == {"smact_timeout": 1}
    assert summary["failure_reasons"] == {"relax_disabled": 1}
