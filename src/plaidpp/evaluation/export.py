"""``plaidpp export``: the S.U.N. and S.S.U.N. crystals of an evaluation, relaxed, as CIFs to take to DFT.

    plaidpp export data/scored/sft --out exports/sft          # writes exports/sft/{index.csv, <id>.cif ...}

``index.csv`` has one row per exported crystal: its id (``sample_id`` for structure inputs, else the slot
index), which lists it is on (S.U.N., S.S.U.N.), formula, space group (requested, as generated, after
relaxation), the potential's energy per atom, the MP2020 correction, the formation energy and E_hull (eV/atom),
the potential and hull that judged it, and the CIF's file name. The CIFs are the relaxed cells the energies
belong to. Files are written whole (temp name, then rename).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from plaidpp.errors import UserError
from plaidpp.evaluation.compare import read_scored
from plaidpp.io import atomic_write, write_text

COLUMNS = ["id", "lists", "formula", "spacegroup_requested", "spacegroup_generated", "spacegroup_achieved",
           "energy_per_atom", "correction_per_atom", "e_form_per_atom", "e_hull", "mlip", "hull", "cif_file"]


def export(scored: str | Path, out: str | Path) -> pd.DataFrame:
    table, summary = read_scored(scored)
    for column in ("is_sun", "is_ssun", "cif_relaxed"):
        if column not in table:
            raise UserError(f"{scored} has no {column!r} column; score it with a current `plaidpp evaluate`")
    picked = table[table["is_sun"].fillna(False) | table["is_ssun"].fillna(False)]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for _, row in picked.iterrows():
        sample_id = str(row["sample_id"]) if "sample_id" in row and isinstance(row["sample_id"], str) else str(row["index"])
        name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in sample_id)
        cif_file = f"{name.removesuffix('.cif')}_{row['formula']}_relaxed.cif"
        write_text(out / cif_file, row["cif_relaxed"])
        rows.append({"id": sample_id, "lists": ",".join(n for n, c in (("S.U.N.", "is_sun"), ("S.S.U.N.", "is_ssun"))
                                                        if bool(row[c])),
                     **{c: row.get(c) for c in COLUMNS[2:10]}, "mlip": summary.get("mlip"),
                     "hull": summary.get("hull_source"), "cif_file": cif_file})
    index = pd.DataFrame(rows, columns=COLUMNS)
    atomic_write(out / "index.csv", lambda tmp: index.to_csv(tmp, index=False))
    print(f"exported {len(index)} crystals ({int(picked['is_sun'].sum())} S.U.N., {int(picked['is_ssun'].sum())} "
          f"S.S.U.N.) -> {out}")
    return index
