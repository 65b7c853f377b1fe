"""Rebuild mp20_dft_formation_energies.csv.gz from its sources (run once, by hand; never at run time).

Sources (see PROVENANCE.md in this folder): the vendored partial MP-20 CSV (all rows, every split) and the
``formation_energy_per_atom`` column of the four LeMaterial lemat-genbench MP-20 hull parquets. Where a
material appears in several sources the values are identical (checked here: max |diff| < 1e-9 eV/atom).

    python data/raw/hull/make_mp20_table.py /path/to/shared/data data/raw/hull/mp20_dft_formation_energies.csv.gz
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def main(shared: Path, out: Path) -> None:
    csv = pd.read_csv(shared / "mp20_partial" / "mp20_partial_merged.csv.gz", keep_default_na=False)
    rows = [
        pd.DataFrame(
            {
                "material_id": csv["material_id"],
                "formula": csv["pretty_formula"],
                "e_form_per_atom": csv["formation_energy_per_atom"].astype(float),
                "mp_e_above_hull": csv["e_above_hull"].astype(float),
                "source": "mp20_partial_csv",
            }
        )
    ]
    for name in ("ensemble", "mace", "orb", "uma"):
        pq = pd.read_parquet(shared / "mp_hull" / f"lemat_genbench_mp20_{name}_above_hull_dataset.parquet")
        rows.append(
            pd.DataFrame(
                {
                    "material_id": pq["material_id"],
                    "formula": pq["pretty_formula"],
                    "e_form_per_atom": pq["formation_energy_per_atom"].astype(float),
                    # the parquets' e_above_hull is against an MLIP hull, not MP's DFT hull: not kept
                    "mp_e_above_hull": float("nan"),
                    "source": f"lemat_{name}",
                }
            )
        )
    allrows = pd.concat(rows, ignore_index=True)
    spread = allrows.groupby("material_id")["e_form_per_atom"].agg(lambda s: s.max() - s.min())
    assert spread.max() < 1e-9, spread.max()
    # keep the first source per material (the CSV first: it also carries MP's e_above_hull)
    table = allrows.drop_duplicates("material_id", keep="first").sort_values("material_id")
    table["e_form_per_atom"] = table["e_form_per_atom"].round(6)
    table.to_csv(out, index=False, compression={"method": "gzip", "mtime": 0})
    print(f"{len(table)} materials -> {out}")
    print(table["source"].value_counts().to_string())


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
