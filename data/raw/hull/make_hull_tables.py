"""Rebuild the offline hull tables from their sources (run once, by hand; never at run time).

    python data/raw/hull/make_hull_tables.py /path/to/shared/data data/raw/hull

Writes, all in formation-energy space (eV/atom) against the matbench-discovery 2023-02-07 elemental
references (the references every candidate crystal's formation energy is computed against):

- ``mp20_dft_formation_energies.csv.gz``: MP-20's own DFT formation energies (the vendored partial CSV and the
  four LeMaterial MP-20 parquets: 39,753 of 45,231 materials), moved onto the 2023-02-07 references;
- ``mp_gga_merged_formation_energies.csv.gz``: that table merged with the MP2020 GGA/GGA+U entries of a later MP
  snapshot (shared data's ``mp_gga_entries_derived_from_hyperconvexhull.csv.gz``, r2SCAN-scale rows already
  removed), the materials MP-20 does not hold: larger cells and phases above 0.08 eV/atom;
- ``mp20_reference_offsets.csv``: the per-element reference offsets fitted here.

MP-20's ``formation_energy_per_atom`` comes from an older MP whose elemental references differ from
2023-02-07 for a few elements. The offsets are fitted by least squares on the materials in both sources
(formation energy against 2023-02-07 minus MP-20's, regressed on element fractions); an element's offset is
applied when it is at least 0.02 eV per unit fraction and rests on at least 500 materials (Br, Bi, I, Eu);
every other fitted offset is below 0.008 eV, within the fit's noise, and left alone. Where the 2023-02-07
reference polymorph itself is an MP-20 material, its MP-20 formation energy gives the offset exactly (it must
come out at 0) and that value replaces the fit.

An elemental entry below its 2023-02-07 reference cannot be in the 2023-02-07 hull (the references are the
lowest-energy MP polymorph of each element then); after the offsets the old references of Br, Bi, I and Eu
are such entries (MP-20's energies of polymorphs MP has since re-computed), so they are dropped and counted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Composition

MIN_OFFSET_EV = 0.02
MIN_SUPPORT = 500
REFS = "matbench_discovery_2023-02-07-mp-elemental-reference-entries.json.gz"


def mp20_rows(shared: Path) -> pd.DataFrame:
    csv = pd.read_csv(shared / "mp20_partial" / "mp20_partial_merged.csv.gz", keep_default_na=False)
    rows = [pd.DataFrame({"material_id": csv["material_id"], "formula": csv["pretty_formula"],
                          "e_form_per_atom_mp20": csv["formation_energy_per_atom"].astype(float),
                          "mp_e_above_hull": csv["e_above_hull"].astype(float), "source": "mp20_partial_csv"})]
    for name in ("ensemble", "mace", "orb", "uma"):
        pq = pd.read_parquet(shared / "mp_hull" / f"lemat_genbench_mp20_{name}_above_hull_dataset.parquet")
        # the parquets' e_above_hull is against an MLIP hull, not MP's DFT hull: not kept
        rows.append(pd.DataFrame({"material_id": pq["material_id"], "formula": pq["pretty_formula"],
                                  "e_form_per_atom_mp20": pq["formation_energy_per_atom"].astype(float),
                                  "mp_e_above_hull": float("nan"), "source": f"lemat_{name}"}))
    allrows = pd.concat(rows, ignore_index=True)
    spread = allrows.groupby("material_id")["e_form_per_atom_mp20"].agg(lambda s: s.max() - s.min())
    assert spread.max() < 1e-9, spread.max()  # identical values wherever sources overlap
    return allrows.drop_duplicates("material_id", keep="first").reset_index(drop=True)


def fractions(formulas: pd.Series) -> tuple[np.ndarray, list[str]]:
    comps = [Composition(f).fractional_composition.as_dict() for f in formulas]
    elements = sorted({e for c in comps for e in c})
    column = {e: i for i, e in enumerate(elements)}
    x = np.zeros((len(comps), len(elements)))
    for row, comp in enumerate(comps):
        for element, share in comp.items():
            x[row, column[element]] = share
    return x, elements


def reference_ids(refs_file: Path) -> dict[str, str]:
    """element -> material id of its 2023-02-07 reference polymorph."""
    import gzip

    with gzip.open(refs_file, "rt") as fh:
        refs = json.load(fh)
    return {el: str(entry["entry_id"]).removesuffix("-GGA") for el, entry in refs.items()}


def fit_offsets(mp20: pd.DataFrame, gga: pd.DataFrame, references: dict[str, str]) -> pd.DataFrame:
    both = mp20.merge(gga[["material_id", "e_form_per_atom_vs_mbd_2023_refs"]], on="material_id")
    x, elements = fractions(both["formula"])
    diff = both["e_form_per_atom_vs_mbd_2023_refs"].to_numpy(float) - both["e_form_per_atom_mp20"].to_numpy(float)
    coef, *_ = np.linalg.lstsq(x, diff, rcond=None)
    support = (x > 0).sum(axis=0)
    table = pd.DataFrame({"element": elements, "offset_ev_per_fraction": coef.round(4), "n_materials": support})
    table["applied"] = (table["offset_ev_per_fraction"].abs() >= MIN_OFFSET_EV) & (table["n_materials"] >= MIN_SUPPORT)
    by_id = dict(zip(mp20["material_id"], mp20["e_form_per_atom_mp20"], strict=True))
    table["exact_from"] = ""
    for row in table.index[table["applied"]]:
        ref = references.get(table.at[row, "element"])
        if ref in by_id:  # the reference polymorph is in MP-20: its formation energy must become 0
            table.at[row, "offset_ev_per_fraction"] = round(-float(by_id[ref]), 6)
            table.at[row, "exact_from"] = ref
    residual = diff - x @ np.where(table["applied"], table.set_index("element").loc[elements,
                                                                                   "offset_ev_per_fraction"], 0.0)
    print(f"{len(both)} materials in both sources; applied offsets: "
          f"{table.loc[table['applied'], ['element', 'offset_ev_per_fraction']].to_dict('records')}; "
          f"residual after them: median |r| {np.median(np.abs(residual)) * 1000:.2f} meV/atom")
    return table.sort_values("offset_ev_per_fraction", key=abs, ascending=False).reset_index(drop=True)


def aligned(mp20: pd.DataFrame, offsets: pd.DataFrame) -> pd.Series:
    applied = dict(offsets.loc[offsets["applied"], ["element", "offset_ev_per_fraction"]].itertuples(index=False))
    x, elements = fractions(mp20["formula"])
    shift = x @ np.array([applied.get(e, 0.0) for e in elements])
    return (mp20["e_form_per_atom_mp20"] + shift).round(6)


def below_reference(table: pd.DataFrame) -> pd.Series:
    """Elemental entries with a formation energy below 0: not in the 2023-02-07 hull by definition."""
    single = pd.Series([len(Composition(f).elements) == 1 for f in table["formula"]], index=table.index)
    return single & (table["e_form_per_atom"] < -1e-6)


def main(shared: Path, out: Path) -> None:
    gga = pd.read_csv(shared / "mp_hull" / "mp_gga_entries_derived_from_hyperconvexhull.csv.gz", keep_default_na=False)
    mp20 = mp20_rows(shared)
    offsets = fit_offsets(mp20, gga, reference_ids(out / REFS))
    mp20["e_form_per_atom"] = aligned(mp20, offsets)
    dropped = below_reference(mp20)
    print(f"dropped {int(dropped.sum())} elemental entries below their 2023-02-07 reference: "
          f"{mp20.loc[dropped, ['material_id', 'formula', 'e_form_per_atom']].to_dict('records')}")
    mp20 = mp20[~dropped]
    fallback = mp20[["material_id", "formula", "e_form_per_atom", "e_form_per_atom_mp20", "mp_e_above_hull", "source"]]
    fallback = fallback.sort_values("material_id")
    gzip = {"method": "gzip", "mtime": 0}
    fallback.to_csv(out / "mp20_dft_formation_energies.csv.gz", index=False, compression=gzip)
    extra = gga[~gga["material_id"].isin(set(mp20_rows(shared)["material_id"]))]
    extra = extra[~below_reference(extra.rename(columns={"e_form_per_atom_vs_mbd_2023_refs": "e_form_per_atom"}))]
    merged = pd.concat([
        fallback[["material_id", "formula", "e_form_per_atom"]].assign(source="mp20"),
        pd.DataFrame({"material_id": extra["material_id"], "formula": extra["formula"],
                      "e_form_per_atom": extra["e_form_per_atom_vs_mbd_2023_refs"].astype(float).round(6),
                      "source": "mp_gga_snapshot"}),
    ], ignore_index=True).sort_values("material_id")
    merged.to_csv(out / "mp_gga_merged_formation_energies.csv.gz", index=False, compression=gzip)
    offsets.to_csv(out / "mp20_reference_offsets.csv", index=False)
    print(f"fallback: {len(fallback)} materials; merged: {len(merged)} ({len(extra)} not in MP-20) -> {out}")
    print(json.dumps(merged["source"].value_counts().to_dict()))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
