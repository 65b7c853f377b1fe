"""The command line: encode a CIF, decode text to CIF, one-line errors with exit status 2."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from plaidpp.cli import main


def _cif_file(tmp_path, mp20_sample):
    path = tmp_path / "crystal.cif"
    path.write_text(mp20_sample(1, seed=5)["cif"].iloc[0])
    return path


def test_encode_then_decode_through_the_cli_gives_back_the_crystal(tmp_path, mp20_sample, capsys, monkeypatch):
    cif = _cif_file(tmp_path, mp20_sample)
    for representation in ("wyckoff", "coords"):
        assert main(["encode", "--repr", representation, str(cif)]) == 0
        text = capsys.readouterr().out
        monkeypatch.setattr(sys, "stdin", io.StringIO(text))
        assert main(["decode", "--repr", representation, "-"]) == 0
        decoded = Structure.from_str(capsys.readouterr().out, fmt="cif")
        assert StructureMatcher().fit(Structure.from_file(cif), decoded)


def test_malformed_text_gives_one_line_error_and_status_2(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("NaCl\nSpacegroup: Fm-3m\nabc: 5.6 5.6\n")
    assert main(["decode", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("plaidpp: error:") and "syntax" in err and "\n" not in err


def test_missing_and_unreadable_files_are_one_line_errors(tmp_path, capsys):
    assert main(["encode", str(tmp_path / "nope.cif")]) == 2
    assert "no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.cif"
    junk.write_text("this is not a cif")
    assert main(["encode", str(junk)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_strict_decode_rejects_an_inconsistent_header(tmp_path, capsys):
    text = "Na4Cl4\nSpacegroup: Fm-3m\nabc: 5.64 5.64 5.64\nangles: 90 90 90\nSites (9)\nNa 0 0 0 4a\nCl 0.5 0.5 0.5 4b\n"
    path = tmp_path / "nacl.txt"
    path.write_text(text)
    assert main(["decode", str(path)]) == 0
    capsys.readouterr()
    assert main(["decode", "--strict", str(path)]) == 2
    assert "inconsistent_header" in capsys.readouterr().err


def test_the_installed_command_exits_with_status_2_on_bad_input(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("garbage")
    proc = subprocess.run(
        [sys.executable, "-m", "plaidpp.cli", "decode", "--repr", "coords", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "syntax" in proc.stderr


def test_a_stage_given_a_bad_option_fails_with_status_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "plaidpp.cli", "prepare", "data=vendored", f"data.file={tmp_path / 'missing.csv.gz'}",
         f"hydra.run.dir={tmp_path / 'h'}"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "vendored MP-20 file not found" in proc.stderr


def test_evaluate_flags_become_hydra_overrides():
    from plaidpp.cli import _flags_to_overrides

    assert _flags_to_overrides("evaluate", ["--samples", "s.jsonl", "--out=d", "mlip=sevennet"]) == [
        "samples=s.jsonl", "out=d", "mlip=sevennet"]
    assert _flags_to_overrides("prepare", ["--samples", "x"]) == ["--samples", "x"]


@pytest.mark.parametrize(("override", "says"), [
    ("mlip=no_such_potential", "mlip=no_such_potential: no such preset; choose from chgnet, fairchem, sevennet"),
    ("no_such_key=3", "unknown setting no_such_key"),
    ("relax.stpes=3", "unknown setting relax.stpes (did you mean relax.steps?)"),
    ("data.url=x/{split}", "bad override"),
])
def test_a_mistyped_override_is_one_line_and_status_2(override, says, capsys):
    assert main(["evaluate", "--samples", "s.jsonl", "--out", "o", override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err
