"""How faithful are the offline hulls? A benchmark, not a test (issue 10's check of the shared-data figures).

For N random vendored MP-20 test rows, the query is the row's own DFT formation energy (on the 2023-02-07
references, as the vendored tables hold it) and the label MP's ``e_above_hull``. Each offline hull
(``hull=mp20_fallback``: MP-20 alone; ``hull=mp_gga_merged``: MP-20 merged with the later MP GGA/GGA+U
snapshot) gives E_hull as is (the row's own entry in the hull) and leave-self-out (LSO: its own entry
removed, how a new crystal of a known composition is scored). Then, on M novel compositions (one element of a
test crystal swapped for its group neighbour), how far apart the two hulls' energies are at that composition.

    python benchmarks/hull_offline_check.py --n 500 --novel 300
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
from pymatgen.core import Composition, Element

from plaidpp.config import PROJECT_ROOT, compose
from plaidpp.evaluation.hull import load_hull

CSV = PROJECT_ROOT / "data/raw/mp20/mp20_partial_merged.csv.gz"


def _hull(name: str):
    return load_hull(compose("evaluate", [f"hull={name}", "samples=-", "out=-"]).hull)


def _aligned_e_form(rows: pd.DataFrame) -> np.ndarray:
    table = pd.read_csv(PROJECT_ROOT / "data/raw/hull/mp20_dft_formation_energies.csv.gz", keep_default_na=False)
    by_id = dict(zip(table["material_id"], table["e_form_per_atom"].astype(float), strict=True))
    return np.array([by_id[m] for m in rows["material_id"]])


def label_agreement(hull, rows: pd.DataFrame, e_form: np.ndarray) -> dict[str, float]:
    labels = rows["e_above_hull"].to_numpy(float)
    comps = [Composition(f) for f in rows["pretty_formula"]]
    as_is = np.array([hull.e_above_hull(c, e) for c, e in zip(comps, e_form, strict=True)])
    lso = np.array([hull.e_above_hull(c, e, exclude=frozenset([m]))
                    for c, e, m in zip(comps, e_form, rows["material_id"], strict=True)])
    stable = labels <= 1e-6
    return {"mae": float(np.mean(np.abs(as_is - labels))), "within_0.01": float(np.mean(np.abs(as_is - labels) <= 0.01)),
            "stable_agreement": float(np.mean((as_is <= 1e-6) == stable)),
            "mae_lso": float(np.mean(np.abs(lso - labels))), "within_0.05_lso": float(np.mean(np.abs(lso - labels) <= 0.05)),
            "stable_agreement_lso": float(np.mean((lso <= 1e-6) == stable))}


def compounds_in_hull(hull, formula: str) -> int:
    """Compounds (two or more elements) the hull of a formula's chemical system is built from."""
    import itertools

    elements = sorted(el.symbol for el in Composition(formula).elements)
    return sum(len(hull._by_elements.get(frozenset(sub), ()))  # noqa: SLF001 - a count, read only
               for k in range(2, len(elements) + 1) for sub in itertools.combinations(elements, k))


def _neighbour(element: Element, known: set[str]) -> str | None:
    """The nearest element of the same group (either side) that the hull's references know."""
    same = sorted((e for e in Element if e.group == element.group and e.symbol in known and e != element),
                  key=lambda e: abs(e.Z - element.Z))
    return same[0].symbol if same else None


def novel_compositions(rows: pd.DataFrame, n: int, seed: int, known: set[str]) -> list[Composition]:
    rng = np.random.default_rng(seed)
    out = []
    for formula in rows["pretty_formula"].sample(frac=1.0, random_state=seed):
        comp = Composition(formula)
        element = comp.elements[rng.integers(len(comp.elements))]
        swap = _neighbour(element, known)
        if swap is None or Element(swap) in comp.elements:
            continue
        out.append(Composition({(swap if el == element else el.symbol): amt for el, amt in comp.items()}))
        if len(out) == n:
            break
    return out


def hull_height(hull, comp: Composition) -> float:
    """The hull's formation energy at ``comp`` (E_hull of a crystal at 0 eV/atom, negated)."""
    return -hull.e_above_hull(comp, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--novel", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    rows = pd.read_csv(CSV, keep_default_na=False)
    test = rows[rows["split"] == "test"].sample(args.n, random_state=args.seed)
    e_form = _aligned_e_form(test)
    hulls = {name: _hull(name) for name in ("mp20_fallback", "mp_gga_merged")}
    report: dict = {"n": args.n, "seed": args.seed}
    for name, hull in hulls.items():
        report[name] = {"entries": hull.n_entries,
                        "compounds_per_chemical_system": float(np.mean([compounds_in_hull(hull, f)
                                                                        for f in test["pretty_formula"]])),
                        **label_agreement(hull, test, e_form)}
    known = set(hulls["mp_gga_merged"].refs.energies)
    novel = novel_compositions(test, args.novel, args.seed, known)
    gap = np.array([hull_height(hulls["mp20_fallback"], c) - hull_height(hulls["mp_gga_merged"], c) for c in novel])
    report["novel_compositions"] = {
        "n": len(novel), "fallback_above_merged_mean": float(gap.mean()), "p90": float(np.percentile(gap, 90)),
        "max": float(gap.max()), "min": float(gap.min()), "share_above_0.05": float(np.mean(gap > 0.05)),
        "worst": str(novel[int(np.argmax(gap))].reduced_formula)}
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
