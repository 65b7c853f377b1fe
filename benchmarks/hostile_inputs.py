"""The hostile inputs of issue 31 at full size, each through ``plaidpp evaluate`` in its own process: wall seconds,
peak memory and what the run counted. ``tests/test_hostile_inputs.py`` asserts the behaviour on small copies; this
prints the figures for the docs (docs/evaluation.md, "What evaluate trusts").

    python benchmarks/hostile_inputs.py [--out benchmarks/results/hostile_inputs.json]

Cases (each beside one good MP-20 crystal where it is a folder): a FIFO, a symlink to /dev/zero, a symlink to
/etc/passwd, a gzip bomb CSV (31 M rows), the issue's 10,164-site W supercell (as a CIF of ~0.7 MB, and again with
``inputs.max_text_kb`` raised so that it parses), a CIF with ``_cell_length_a -4.0``. Relaxation is off: every
case is decided before it (``relax.enabled=false``); the good crystal is parsed and checked like any other.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from pymatgen.core import Lattice, Structure

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BASE = ["mlip=chgnet", "relax.enabled=false", "tracking.uri=null", "workers=1", "progress=false"]
# a wrapper whose only child is the evaluate run: RUSAGE_CHILDREN's peak is that run's peak resident memory
MEASURE = ("import resource, subprocess, sys, time; t = time.monotonic(); "
           "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
           "print(p.returncode, round(time.monotonic() - t, 1), "
           "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024); print(p.stderr[-400:], file=sys.stderr)")


def good_cif() -> str:
    rows = pd.read_csv(PROJECT_ROOT / "data/raw/mp20/mp20_partial_merged.csv.gz")
    return rows[rows["split"] == "test"]["cif"].iloc[0]


def folder_with(tmp: Path, name: str, make) -> Path:  # noqa: ANN001 - make(path) builds the hostile entry
    folder = tmp / name
    folder.mkdir()
    (folder / "good.cif").write_text(good_cif())
    make(folder / f"{name}.cif")
    return folder


def tungsten_supercell() -> str:
    """The issue's 10,164-site cell: bcc W (primitive, 1 site) times 22 x 22 x 21."""
    w = Structure(Lattice.from_parameters(2.74, 2.74, 2.74, 109.47, 109.47, 109.47), ["W"], [[0, 0, 0]])
    return (w * (22, 22, 21)).to(fmt="cif")


def gzip_bomb(path: Path, rows: int = 31_000_000) -> None:
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(b"material_id,cif\n")
        block = b"m,x\n" * 1_000_000
        for _ in range(rows // 1_000_000):
            fh.write(block)


def cases(tmp: Path) -> dict[str, tuple[Path, list[str]]]:
    negative = good_cif().splitlines()
    at = next(i for i, line in enumerate(negative) if line.startswith("_cell_length_a"))
    negative[at] = "_cell_length_a   -4.0"
    big = tungsten_supercell()
    bomb = tmp / "bomb.csv.gz"
    gzip_bomb(bomb)
    return {
        "fifo": (folder_with(tmp, "fifo", os.mkfifo), []),
        "symlink_dev_zero": (folder_with(tmp, "zero", lambda p: p.symlink_to("/dev/zero")), []),
        "symlink_dev_zero_followed": (tmp / "zero", ["inputs.follow_symlinks=true"]),
        "symlink_etc_passwd": (folder_with(tmp, "passwd", lambda p: p.symlink_to("/etc/passwd")), []),
        "gzip_bomb_31M_rows": (bomb, []),
        "w_supercell_10164_sites": (folder_with(tmp, "big", lambda p: p.write_text(big)), []),
        "w_supercell_parsed": (tmp / "big", ["inputs.max_text_kb=4096"]),
        "negative_cell_length": (folder_with(tmp, "negative", lambda p: p.write_text("\n".join(negative))), []),
    }


def run_case(samples: Path, extra: list[str], out: Path) -> dict:
    command = [sys.executable, "-c", MEASURE, sys.executable, "-m", "plaidpp.cli", "evaluate", "--samples",
               str(samples), "--out", str(out), *BASE, *extra]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=PROJECT_ROOT)
    status, seconds, peak_mib = proc.stdout.split()[-3:]
    result = {"exit": int(status), "seconds": float(seconds), "peak_mib": int(peak_mib)}
    if (out / "structures.parquet").is_file():
        table = pd.read_parquet(out / "structures.parquet")
        result["reasons"] = {str(k): str(v) for k, v in zip(table["sample_id"], table["fail_reason"], strict=True)}
        result["bytes_of_unparsed_text_stored"] = int(table.loc[~table["parse_ok"], "text"].fillna("").str.len().sum())
    else:
        result["message"] = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks/results/hostile_inputs.json")
    args = parser.parse_args()
    record = {"load_before": os.getloadavg()[0], "cases": {}}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for name, (samples, extra) in cases(tmp).items():
            started = time.monotonic()
            record["cases"][name] = result = run_case(samples, extra, tmp / f"out-{name}")
            print(f"{name:<28} exit {result['exit']}  {result['seconds']:6.1f} s  {result['peak_mib']:5d} MiB  "
                  f"{result.get('reasons') or result.get('message')}  ({time.monotonic() - started:.0f} s)", flush=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
