"""Any generator's crystals, with no setup: a folder of CIFs, a CSV with a cif column, an extxyz file."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from plaidpp.config import PROJECT_ROOT
from plaidpp.evaluation.inputs import detect_format, read_samples

from .conftest import shrunk_overrides


def _small(rows: pd.DataFrame, n: int) -> pd.DataFrame:
    sizes = rows["cif"].map(lambda c: len(Structure.from_str(c, fmt="cif")))
    return rows[sizes <= 4].head(n)


@pytest.fixture(scope="module")
def crystals(mp20_rows):
    """Two test crystals and one training crystal, small enough to relax in seconds."""
    test = _small(mp20_rows[mp20_rows["split"] == "test"].sample(60, random_state=3), 2)
    train = _small(mp20_rows[mp20_rows["split"] == "train"].sample(60, random_state=4), 1)
    assert len(test) == 2 and len(train) == 1
    return list(test["cif"]) + list(train["cif"])


def _evaluate(tmp_path, samples, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "plaidpp.cli", "evaluate", "--samples", str(samples), "--out", str(tmp_path / "out"),
           *shrunk_overrides("evaluate", tmp_path, ["mlip=chgnet", "relax.steps=30", *extra])]
    return subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_folder_of_cifs_is_scored_from_a_fresh_clone(tmp_path, crystals):
    """No prepare, no sft: the novelty reference is the vendored MP-20 rows. Junk files are counted, the
    training crystal is not novel, the repeated one is not unique, and every row keeps its file name."""
    folder = tmp_path / "generated"
    folder.mkdir()
    for name, cif in zip(("a.cif", "b.cif", "train.cif"), crystals, strict=True):
        (folder / name).write_text(cif)
    (folder / "b_again.cif").write_text(crystals[1])
    (folder / "junk.cif").write_text("data_nothing\n_this is not a crystal\n")
    (folder / "binary.cif").write_bytes(bytes(range(256)))
    disordered = Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    (folder / "disordered.cif").write_text(disordered.to(fmt="cif"))
    (folder / "notes.txt").write_text("not a sample")
    result = _evaluate(tmp_path, folder)
    assert result.returncode == 0, result.stderr[-2000:]
    table = pd.read_parquet(tmp_path / "out" / "structures.parquet").set_index("sample_id")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["n_requested"] == 7 and set(table.index) == {"a.cif", "b.cif", "train.cif", "b_again.cif",
                                                                 "junk.cif", "binary.cif", "disordered.cif"}
    assert table.loc["junk.cif", "fail_reason"] == "parse:cif_unreadable"
    assert table.loc["binary.cif", "fail_reason"] == "input:not_utf8"
    assert table.loc["disordered.cif", "fail_reason"] == "parse:disordered"
    assert table.loc[["a.cif", "b.cif", "train.cif", "b_again.cif"], "relax_ok"].all()
    assert not table.loc["train.cif", "is_novel"] and table.loc[["a.cif", "b.cif"], "is_novel"].all()
    assert table.loc["b.cif", "is_unique"] and not table.loc["b_again.cif", "is_unique"]
    assert summary["novelty_reference"].endswith("mp20_partial_merged.csv.gz")
    assert summary["uniqueness_rate"] == pytest.approx(3 / 7)
    lo, hi = summary["uniqueness_rate_ci95"]
    assert lo < 3 / 7 < hi  # every headline rate carries its interval


def test_a_csv_with_a_cif_column_and_an_extxyz_file_are_read_as_samples(tmp_path, crystals):
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    csv = tmp_path / "gen.csv.gz"
    pd.DataFrame({"material_id": ["g0", "g1", "g2"], "cif": [crystals[0], "", crystals[2]]}).to_csv(csv, index=False)
    rows = read_samples(csv)
    assert [r["sample_id"] for r in rows] == ["g0", "g1", "g2"] and rows[1]["text"] == ""
    assert all(r["repr"] == "cif" for r in rows)
    xyz = tmp_path / "gen.extxyz"
    write(str(xyz), [AseAtomsAdaptor.get_atoms(Structure.from_str(c, fmt="cif")) for c in crystals], format="extxyz")
    frames = read_samples(xyz)
    assert [r["sample_id"] for r in frames] == ["0", "1", "2"]
    back = Structure.from_str(frames[2]["text"], fmt="cif")
    assert back.composition.reduced_formula == Structure.from_str(crystals[2], fmt="cif").composition.reduced_formula
    assert detect_format(tmp_path) == "cif_dir" and read_samples(csv, "csv", limit=2)[-1]["sample_id"] == "g1"


def test_bad_input_for_the_whole_run_is_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_column = tmp_path / "x.csv"
    no_column.write_text("material_id,structure\nm1,abc\n")
    for samples, says in ((tmp_path / "nowhere", "samples not found"), (empty, "holds no *.cif files"),
                          (no_column, "has no 'cif' column")):
        result = _evaluate(tmp_path, samples)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and says in result.stderr, result.stderr


def test_pairing_follows_the_sampling_runs_seed_not_a_retrys_batch_seed():
    """Slot 1 needed a second attempt from one model only: still paired (same run seed); another run seed is not."""
    from plaidpp.evaluation.compare import is_paired

    a = pd.DataFrame({"index": [0, 1], "prompt": ["p", "q"], "seed": [11, 12], "run_seed": [7, 7]})
    assert is_paired(a, a.assign(seed=[11, 99]))
    assert not is_paired(a, a.assign(run_seed=[8, 8]))
    assert not is_paired(a, a.assign(prompt=["p", "r"]))
    assert not is_paired(a.drop(columns="run_seed"), a.drop(columns="run_seed").assign(seed=[11, 99]))


def test_compare_pairs_shared_slots_and_export_writes_the_sun_crystals(tmp_path, crystals, capsys):
    """Two scored tables of the same slots compare paired; the S.U.N. crystals export as relaxed CIFs."""
    from plaidpp.cli import main
    from plaidpp.config import compose
    from plaidpp.evaluation.evaluate import score_to_dir

    cfg = compose("evaluate", shrunk_overrides("evaluate", tmp_path, ["samples=x", "out=y", "mlip=chgnet",
                                                                      "relax.steps=30"]))
    rows = [{"text": c, "repr": "cif", "spacegroup": None, "prompt": "p", "seed": 1, "index": i}
            for i, c in enumerate(crystals)]
    score_to_dir(rows, cfg, tmp_path / "a", "a")
    broken = [dict(r, text="junk") if r["index"] == 0 else r for r in rows]
    score_to_dir(broken, cfg, tmp_path / "b", "b")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--json", str(tmp_path / "c.json")]) == 0
    result = json.loads((tmp_path / "c.json").read_text())
    assert result["paired"] is True
    parse = result["rates"]["parse_rate"]
    assert parse["difference"] == pytest.approx(1 / 3) and parse["discordant"] == {"a_only": 1, "b_only": 0}
    assert parse["difference_ci95"][0] >= 0 and "beyond noise" in capsys.readouterr().out
    table = pd.read_parquet(tmp_path / "a" / "structures.parquet")
    assert main(["export", str(tmp_path / "a"), "--out", str(tmp_path / "dft")]) == 0
    index = pd.read_csv(tmp_path / "dft" / "index.csv")
    assert len(index) == int((table["is_sun"] | table["is_ssun"]).sum())
    for cif_file in index["cif_file"]:
        assert Structure.from_str((tmp_path / "dft" / cif_file).read_text(), fmt="cif").is_ordered
