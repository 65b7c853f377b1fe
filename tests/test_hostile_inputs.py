"""``plaidpp evaluate`` pointed at hostile or careless inputs (issue 31): each case is built here on the fly - a
FIFO, symlinks to ``/dev/zero`` and to a file outside the folder, a gzip bomb, an oversized cell, a negative cell
length, an unknown element, repeated ids, a sub-folder - and the run stays bounded in time and memory, counts
each with its fixed reason, scores the good crystals beside them, stores nothing it was not asked to read, and
writes nothing outside ``--out`` (and the project's ``.cache``)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from plaidpp.config import PROJECT_ROOT
from plaidpp.errors import UserError
from plaidpp.evaluation.inputs import read_input
from plaidpp.evaluation.validity import cif_cell_problem, structural_validity
from plaidpp.settings.evaluation import InputSettings

from .conftest import few_site_rows, shrunk_overrides

SECRET = "plaidpp-hostile-test-secret-7f3a"  # must never reach a results file or the tracking store


@pytest.fixture(scope="module")
def good_cifs(mp20_rows):
    return list(few_site_rows(mp20_rows[mp20_rows["split"] == "test"].sample(80, random_state=5), 2)["cif"])


def _negative_length(cif: str) -> str:
    lines = cif.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("_cell_length_a"))
    lines[at] = "_cell_length_a   -4.0"
    return "\n".join(lines) + "\n"


def _unknown_element_cif(cif: str) -> str:
    """The first site's element replaced by Xx in the atom loop (pymatgen reads the file, then fails on Xx)."""
    structure = Structure.from_str(cif, fmt="cif")
    symbol = structure[0].specie.symbol
    lines = cif.splitlines()
    for i, line in enumerate(lines):
        fields = line.split()
        if fields and fields[0] == symbol and len(fields) >= 6 and not line.startswith("_"):
            lines[i] = line.replace(symbol, "Xx", 1).replace(fields[1], "Xx0", 1)
            break
    return "\n".join(lines) + "\n"


def _hostile_folder(root: Path, good: list[str]) -> Path:
    folder = root / "generated"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.cif").write_text(good[0])
    (folder / "b.cif").write_text(good[1])
    (folder / "sub" / "c.cif").write_text(good[0])  # not read: sub-folders are counted, inputs.recursive reads them
    os.mkfifo(folder / "y.cif")  # opening it for reading would block until a writer comes
    (folder / "x.cif").symlink_to("/dev/zero")  # read whole, it never ends
    secret = root / "secret.txt"
    secret.write_text(f"{SECRET}\n")
    (folder / "s.cif").symlink_to(secret)  # outside the folder
    (folder / "neg.cif").write_text(_negative_length(good[0]))
    (folder / "xx.cif").write_text(_unknown_element_cif(good[1]))
    big = Structure(Lattice.cubic(3.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]) * (8, 8, 8)  # 1,024 sites
    (folder / "big.cif").write_text(big.to(fmt="cif"))
    (folder / "huge.cif").write_text("#" * (300 * 1024) + "\n" + good[0])  # over inputs.max_text_kb (256)
    return folder


@pytest.mark.slow
def test_a_hostile_folder_is_scored_bounded_and_leaks_nothing(tmp_path, good_cifs):
    root, work, elsewhere = tmp_path / "project", tmp_path / "work", tmp_path / "elsewhere"
    for folder in (root, work, elsewhere):
        folder.mkdir()
    samples = _hostile_folder(tmp_path, good_cifs)
    out = work / "out"
    overrides = shrunk_overrides("evaluate", root, ["mlip=chgnet", "relax.steps=30", "progress=false"])
    overrides = [o for o in overrides if not o.startswith("tracking.uri")] + [
        f"tracking.uri=sqlite:///{elsewhere / 'mlflow.db'}"]
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "plaidpp.cli", "evaluate", "--samples", str(samples),
                             "--out", str(out), *overrides], cwd=work, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - start
    assert result.returncode == 0, result.stderr[-3000:]
    assert seconds < 300, seconds  # no hang on the FIFO, no read of /dev/zero, no relaxation of 1,024 sites

    table = pd.read_parquet(out / "structures.parquet").set_index("sample_id")
    summary = json.loads((out / "summary.json").read_text())
    expected = {"y.cif": "input:not_regular_file", "x.cif": "input:symlink", "s.cif": "input:symlink",
                "huge.cif": "input:text_too_large", "neg.cif": "invalid_structure:invalid_cell_parameters",
                "big.cif": "invalid_structure:too_large", "xx.cif": "parse:unknown_element"}
    assert {k: table.loc[k, "fail_reason"] for k in expected} == expected
    assert "Xx" in table.loc["xx.cif", "fail_detail"] and "1024 sites" in table.loc["big.cif", "fail_detail"]
    assert table.loc[["a.cif", "b.cif"], "relax_ok"].all()  # the good crystals beside them are scored
    assert summary["n_requested"] == 9 and summary["input_skipped"] == {"subfolder": 1}
    assert all(":" not in key.split(":", 1)[1] for key in summary["failure_reasons"] if ":" in key)  # fixed keys

    # what was parsed is stored (pymatgen's CIF), with a hash of what was read; nothing else
    stored = Structure.from_str(table.loc["a.cif", "text"], fmt="cif")
    assert stored.composition == Structure.from_str(good_cifs[0], fmt="cif").composition
    unparsed = [k for k, reason in expected.items() if reason.startswith(("input:", "parse:"))]
    assert table.loc[unparsed, "text"].isna().all()  # keep_raw_text=false: nothing of what did not parse
    assert table.loc["neg.cif", "text"].startswith("# generated using pymatgen")  # parsed: pymatgen's CIF
    assert table.loc["a.cif", "input_sha256"] and table.loc[["x.cif", "y.cif", "s.cif"], "input_sha256"].isna().all()

    # nothing outside --out in the working directory; MLflow's copy sits beside its store; no secret anywhere
    assert sorted(p.name for p in work.iterdir()) == ["out"]
    assert list((elsewhere / "mlruns").rglob("structures.parquet"))
    for folder in (work, elsewhere, root):
        for file in (f for f in folder.rglob("*") if f.is_file()):
            assert SECRET.encode() not in file.read_bytes(), file
    assert list((root / ".cache" / "hydra").iterdir())  # Hydra's own log went to the project's .cache


def _reader_run(code: str) -> dict:
    """Run reader code in a fresh process (a hang or a memory blow-up cannot take the test run with it) and
    return what it printed as JSON, with its peak resident memory above the baseline after imports, in MiB."""
    program = f"""
import json, resource, time
from plaidpp.errors import UserError
from plaidpp.evaluation.inputs import read_input
from plaidpp.settings.evaluation import InputSettings
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.monotonic()
{code}
out["peak_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
out["seconds"] = time.monotonic() - start
print(json.dumps(out))
"""
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                          cwd=PROJECT_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_gzip_bomb_stops_at_the_limits_with_bounded_memory(tmp_path):
    rows_bomb, cell_bomb = tmp_path / "rows.csv.gz", tmp_path / "cell.csv.gz"
    with gzip.open(rows_bomb, "wb", compresslevel=9) as fh:  # ~3 M rows in ~100 KB
        fh.write(b"material_id,cif\n")
        fh.write(b"m,x\n" * 3_000_000)
    with gzip.open(cell_bomb, "wb", compresslevel=9) as fh:  # one 200 MiB cell
        fh.write(b"material_id,cif\nm,")
        for _ in range(200):
            fh.write(b"a" * 2**20)
        fh.write(b"\n")
    assert rows_bomb.stat().st_size < 2**20 and cell_bomb.stat().st_size < 2**20
    out = _reader_run(f"""
out = {{}}
for name, path, limits in (("rows", {str(rows_bomb)!r}, InputSettings(max_rows=20_000)),
                           ("cell", {str(cell_bomb)!r}, InputSettings(max_total_mb=16))):
    try:
        read_input(path, "auto", "cif", limits)
        out[name] = "read"
    except UserError as exc:
        out[name] = str(exc)
""")
    assert "more than 20,000 samples" in out["rows"] and "inputs.max_rows" in out["rows"]
    assert "more than 16 MiB" in out["cell"] and "inputs.max_total_mb" in out["cell"]
    assert out["peak_mib"] < 200 and out["seconds"] < 30, out


def test_a_fifo_or_device_given_as_the_samples_file_is_one_line(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    (tmp_path / "zero.jsonl").symlink_to("/dev/zero")
    out = _reader_run(f"""
out = {{}}
for path in ({str(fifo)!r}, {str(tmp_path / 'zero.jsonl')!r}):
    try:
        read_input(path, "auto", "cif", InputSettings())
        out[path] = "read"
    except UserError as exc:
        out[path] = str(exc)
""")
    assert all("not a regular file" in v for k, v in out.items() if k.startswith("/")), out
    assert out["seconds"] < 10


def test_symlinks_are_followed_only_inside_the_folder_and_sub_folders_on_request(tmp_path, good_cifs):
    folder = tmp_path / "d"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.cif").write_text(good_cifs[0])
    (folder / "sub" / "b.cif").write_text(good_cifs[1])
    (folder / "inside.cif").symlink_to(folder / "a.cif")
    (tmp_path / "secret.cif").write_text(SECRET)
    (folder / "outside.cif").symlink_to(tmp_path / "secret.cif")
    (folder / "zero.cif").symlink_to("/dev/zero")
    (folder / "dangling.cif").symlink_to(tmp_path / "absent.cif")
    (folder / "notes.txt").write_text("not a sample")

    def reasons(samples):
        return {r["sample_id"]: r.get("input_reason") for r in samples.rows}

    default = read_input(folder, "auto", "cif", InputSettings())
    assert reasons(default) == {"a.cif": None, "dangling.cif": "symlink", "inside.cif": "symlink",
                                "outside.cif": "symlink", "zero.cif": "symlink"}
    assert default.describe()["input_skipped"] == {"not_cif": 1, "subfolder": 1}
    follow = read_input(folder, "auto", "cif", InputSettings(follow_symlinks=True, recursive=True))
    assert reasons(follow) == {"a.cif": None, "dangling.cif": "unreadable", "inside.cif": None,
                               "outside.cif": "symlink_outside", "sub/b.cif": None, "zero.cif": "symlink_outside"}
    texts = {r["sample_id"]: r["text"] for r in follow.rows}
    assert texts["inside.cif"] == good_cifs[0] and SECRET not in "".join(texts.values())


def test_repeated_ids_are_made_unique_and_counted(tmp_path, good_cifs):
    csv = tmp_path / "gen.csv"
    pd.DataFrame({"material_id": ["m", "m", "m", "n"], "cif": [good_cifs[0]] * 4}).to_csv(csv, index=False)
    with pytest.warns(UserWarning, match="2 repeated sample ids"):
        samples = read_input(csv, "auto", "cif", InputSettings())
    assert [r["sample_id"] for r in samples.rows] == ["m", "m#2", "m#3", "n"]
    assert samples.describe()["n_duplicate_ids"] == 2


def test_too_many_files_in_a_folder_is_one_line_before_any_work(tmp_path, good_cifs):
    for i in range(5):
        (tmp_path / f"{i}.cif").write_text(good_cifs[0])
    with pytest.raises(UserError, match="more than 4 samples"):
        read_input(tmp_path, "auto", "cif", InputSettings(max_rows=4))


@pytest.mark.parametrize(("field", "value", "says"), [
    ("_cell_length_a", "-4.0", "not > 0"), ("_cell_length_b", "0", "not > 0"), ("_cell_length_c", "nan", "nan"),
    ("_cell_angle_alpha", "180", "not in (0, 180)"), ("_cell_angle_gamma", "abc", "not a number")])
def test_cell_parameters_are_checked_as_the_file_states_them(good_cifs, field, value, says):
    lines = [f"{field}   {value}" if line.startswith(field) else line for line in good_cifs[0].splitlines()]
    assert says in cif_cell_problem("\n".join(lines))
    assert cif_cell_problem(good_cifs[0]) is None
    # angles that are each fine but make no cell together (alpha + beta < gamma: the third vector cannot close)
    flat = [("_cell_angle_alpha   30" if line.startswith("_cell_angle_alpha") else
             "_cell_angle_beta   30" if line.startswith("_cell_angle_beta") else
             "_cell_angle_gamma   120" if line.startswith("_cell_angle_gamma") else line)
            for line in good_cifs[0].splitlines()]
    assert "make no cell" in cif_cell_problem("\n".join(flat))


def test_a_flat_cell_is_invalid_with_its_own_reason():
    flat = Structure(Lattice([[4, 0, 0], [0, 4, 0], [4, 4, 0]]), ["Na"], [[0, 0, 0]])
    assert structural_validity(flat).reason == "degenerate_cell"
