"""Does plaidpp's evaluation agree with MatterGen's, crystal by crystal? A benchmark, not a test (issue 11).

MatterGen's metric code (``mattergen==1.0.3``, the reference implementation most generators report with) is run
on the same crystals in a side virtual environment, because it pins numpy<2, smact<4 and pymatgen<2025; it is
built on first use from PyPI (``--side-env``, default ``.venv-mattergen``). Four per-crystal calls are compared:

- structural validity: ours ``structural_validity`` vs MatterGen ``structure_validity``;
- compositional validity: ours ``composition_validity`` vs MatterGen ``is_smact_valid``;
- uniqueness: ours ``uniqueness`` vs MatterGen ``OrderedDatasetUniquenessComputer``, both over *all* crystals
  (plaidpp's evaluation then counts only valid crystals as unique; that gate is left out to compare the matcher);
- novelty against the MP-20 rows of the training splits: ours ``TrainingSet.is_novel`` vs MatterGen's ordered
  dataset matcher. Both bucket by reduced formula, so only the training rows of the crystals' formulas are sent.

The crystals (>= 500): MP-20 test rows, the decoded crystals of a generated samples file (``make run`` writes
``data/samples/sft.jsonl``), training rows (not novel by construction), 2x1x1 supercells and rotated copies of
test rows (duplicates), copies strained by 3 % and by 25 %, copies with one atom moved onto a neighbour
(invalid), one-atom cells shorter than 0.5 Å (invalid only when an atom's own periodic images count: plaidpp
counts them, MatterGen's distance matrix does not) and two atoms in a box of vacuum (plaidpp's volume window is
1-500 Å^3/atom, MatterGen only rejects a cell under 0.1 Å^3). Those two are the deliberate differences.

    python benchmarks/mattergen_agreement.py --samples data/samples/sft.jsonl --n-test 300 --out agreement.csv

Every disagreement is printed with its crystal, and the run ends with the agreement of each call and both sides'
rates with their Wilson 95 % intervals.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Lattice, Structure

from plaidpp.config import PROJECT_ROOT, compose
from plaidpp.evaluation.inputs import read_samples
from plaidpp.evaluation.novelty import Matching, TrainingSet, uniqueness
from plaidpp.evaluation.validity import composition_validity, structural_validity
from plaidpp.representation import DecodeError, get
from plaidpp.stats import wilson

CSV = PROJECT_ROOT / "data/raw/mp20/mp20_partial_merged.csv.gz"
SIDE_SCRIPT = Path(__file__).with_name("mattergen_side.py")
# The versions MatterGen 1.0.3 ran with: its own pin numpy<2, the pymatgen of its release, and SMACT < 3 (it does
# not pin SMACT, but SMACT 3.0 switched ``Element.oxidation_states``, which its ``is_smact_valid`` reads, from the
# SMACT14 table to ICSD24: under SMACT 3.2 it disagreed with CDVAE's convention on 47 of 443 crystals).
# mattergen itself is installed with --no-deps: its full requirements pull torch, lightning and hydra.
SIDE_REQUIREMENTS = ["numpy<2", "smact<3", "pymatgen<2025", "pandas", "scipy", "cachetools", "lmdb", "tqdm",
                     "monty", "typing_extensions"]
CALLS = ["structure_valid", "smact_valid", "unique", "novel"]


def side_env(path: Path) -> Path:
    python = path / "bin" / "python"
    if python.exists():
        return python
    print(f"building the MatterGen side environment in {path} (once; needs pip's index)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *SIDE_REQUIREMENTS], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "mattergen==1.0.3"], check=True)
    return python


def _cif(structure: Structure) -> str:
    # As JSON, not CIF: a CIF parser merges coincident sites, which would hide exactly the overlaps compared here.
    return json.dumps(structure.as_dict())


def build_crystals(samples: Path | None, n_test: int, seed: int, train_splits: list[str]) -> pd.DataFrame:
    """(id, kind, cif = the structure as pymatgen JSON) rows; ``kind`` says what a crystal is and, for the made-up ones, what should happen."""
    rng = np.random.default_rng(seed)
    rows = pd.read_csv(CSV, keep_default_na=False)
    test = rows[rows["split"] == "test"].sample(n_test, random_state=seed)
    train = rows[rows["split"].isin(train_splits)].sample(max(20, n_test // 6), random_state=seed)
    out: list[dict[str, str]] = []
    for mid, cif in zip(test["material_id"], test["cif"], strict=True):
        out.append({"id": mid, "kind": "mp20_test", "cif": _cif(_parse(cif))})
    for mid, cif in zip(train["material_id"], train["cif"], strict=True):
        out.append({"id": mid, "kind": "mp20_train", "cif": _cif(_parse(cif))})
    if samples is not None:
        for row in read_samples(samples, "jsonl"):
            if not row.get("final", True):
                continue  # an attempt that was resampled
            try:
                s = get(row["repr"]).decode(row["text"])
            except (DecodeError, KeyError, ValueError):
                continue  # unparseable text: neither side can score it
            out.append({"id": f"gen{row.get('index', len(out))}", "kind": "generated", "cif": _cif(s)})
    picks = test.sample(min(len(test), max(10, n_test // 10)), random_state=seed + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for mid, cif in zip(picks["material_id"], picks["cif"], strict=True):
            s = _parse(cif)
            out.append({"id": f"{mid}:supercell", "kind": "duplicate_supercell", "cif": _cif(s * (2, 1, 1))})
            rotated = Structure(Lattice(s.lattice.matrix @ _rotation(rng)), s.species, s.frac_coords)
            out.append({"id": f"{mid}:rotated", "kind": "duplicate_rotated", "cif": _cif(rotated)})
            for strain, kind in ((0.03, "strained_3pct"), (0.25, "strained_25pct")):
                strained = s.copy()
                strained.apply_strain([strain, 0.0, -strain / 2])
                out.append({"id": f"{mid}:{kind}", "kind": kind, "cif": _cif(strained)})
            if len(s) > 1:
                moved = s.copy()
                neighbour = moved[1].coords + rng.normal(size=3) * 0.05
                moved.replace(0, moved[0].species, neighbour, coords_are_cartesian=True)
                out.append({"id": f"{mid}:overlap", "kind": "overlapping_atoms", "cif": _cif(moved)})
    for i, a in enumerate((0.3, 0.4, 0.45)):
        cell = Structure(Lattice.from_parameters(a, 4.0, 4.0, 90, 90, 90), ["Cu"], [[0, 0, 0]])
        out.append({"id": f"short_axis_{i}", "kind": "self_image_overlap", "cif": _cif(cell)})
    for i, a in enumerate((12.0, 16.0)):  # 864 and 2048 Å^3/atom: two atoms in a box of vacuum
        cell = Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        out.append({"id": f"vacuum_box_{i}", "kind": "vacuum_cell", "cif": _cif(cell)})
    return pd.DataFrame(out)


def _parse(cif: str) -> Structure:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Structure.from_str(cif, fmt="cif")


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def plaidpp_calls(structures: list[Structure], reference: TrainingSet, cfg) -> pd.DataFrame:
    lo_hi = tuple(cfg.validity.volume_per_atom)
    checks = [structural_validity(s, cfg.validity.min_distance, lo_hi) for s in structures]
    smact = []
    for s in structures:
        try:
            smact.append(composition_validity(s.composition))
        except Exception as exc:  # noqa: BLE001 - recorded, compared as a disagreement
            smact.append(f"error:{type(exc).__name__}")
    matching = Matching(cfg.novelty.matcher_time_limit_s)
    unique, _ = uniqueness(structures, matching)
    novel = [reference.is_novel(s, matching) for s in structures]
    return pd.DataFrame({"structure_valid": [c.valid for c in checks],
                         "structure_reason": [c.reason for c in checks],
                         "min_distance": [c.min_distance for c in checks], "smact_valid": smact,
                         "unique": unique, "novel": novel,
                         "formula": [s.composition.reduced_formula for s in structures]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=Path, default=PROJECT_ROOT / "data/samples/sft.jsonl",
                        help="generated samples (plaidpp sample JSONL); 'none' to leave them out")
    parser.add_argument("--n-test", type=int, default=300, help="MP-20 test rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--side-env", type=Path, default=PROJECT_ROOT / ".venv-mattergen")
    parser.add_argument("--out", type=Path, default=None, help="per-crystal CSV of both sides' calls")
    args = parser.parse_args()
    samples = None if str(args.samples) == "none" else args.samples
    if samples is not None and not samples.is_file():
        sys.exit(f"error: no samples file {samples} (run `make run` first, or pass --samples none)")
    cfg = compose("evaluate", ["samples=-", "out=-"])
    python = side_env(args.side_env)

    crystals = build_crystals(samples, args.n_test, args.seed, list(cfg.novelty.splits))
    rows = pd.read_csv(CSV, keep_default_na=False)
    train = rows[rows["split"].isin(cfg.novelty.splits)]
    t0 = time.perf_counter()
    structures = [Structure.from_dict(json.loads(c)) for c in crystals["cif"]]
    train = train[train["pretty_formula"].isin({s.composition.reduced_formula for s in structures})]
    reference = TrainingSet(list(train["pretty_formula"]), list(train["cif"]), "mp20:" + ",".join(cfg.novelty.splits), "")
    ours = plaidpp_calls(structures, reference, cfg)
    t_ours = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        request, answer = Path(tmp) / "crystals.json", Path(tmp) / "out.json"
        request.write_text(json.dumps({"samples": [{"id": i, "structure": c} for i, c in zip(crystals["id"], crystals["cif"], strict=True)],
                                       "reference": list(train["cif"])}))
        t0 = time.perf_counter()
        subprocess.run([str(python), "-W", "ignore", str(SIDE_SCRIPT), str(request), str(answer)], check=True)
        t_theirs = time.perf_counter() - t0
        theirs = pd.DataFrame(json.loads(answer.read_text()))

    table = pd.concat([crystals[["id", "kind"]], ours.add_prefix("plaidpp_"), theirs[CALLS].add_prefix("mattergen_")],
                      axis=1)
    print(f"\n{len(table)} crystals ({', '.join(f'{k} {v}' for k, v in table['kind'].value_counts().items())}); "
          f"reference {len(train)} MP-20 rows of splits {list(cfg.novelty.splits)} sharing a formula; "
          f"plaidpp {t_ours:.0f} s, MatterGen {t_theirs:.0f} s (incl. its start-up)\n")
    for call in CALLS:
        a, b = table[f"plaidpp_{call}"], table[f"mattergen_{call}"]
        differ = table[a.astype(str) != b.astype(str)]
        ra, rb = (a == True).sum(), (b == True).sum()  # noqa: E712 - errors are strings, not False
        ia, ib = wilson(int(ra), len(table)), wilson(int(rb), len(table))
        print(f"{call:16s} agree {len(table) - len(differ)}/{len(table)}   plaidpp {ra}/{len(table)} "
              f"[{ia[0]:.3f}, {ia[1]:.3f}]   MatterGen {rb}/{len(table)} [{ib[0]:.3f}, {ib[1]:.3f}]")
        for _, row in differ.iterrows():
            detail = (f" min_distance {row['plaidpp_min_distance']:.3f} Å, reason {row['plaidpp_structure_reason']}"
                      if call == "structure_valid" else "")
            print(f"    {row['id']:28s} {row['kind']:20s} {row['plaidpp_formula']:14s} plaidpp {row[f'plaidpp_{call}']}"
                  f" / MatterGen {row[f'mattergen_{call}']}{detail}")
    print("\nplaidpp's calls by kind of crystal (fraction true):")
    print(table.groupby("kind")[[f"plaidpp_{c}" for c in CALLS]].agg(lambda v: float((v == True).mean()))  # noqa: E712
          .rename(columns=lambda c: c.removeprefix("plaidpp_")).round(3).to_string())
    if args.out is not None:
        table.to_csv(args.out, index=False)
        print(f"\nper-crystal calls: {args.out}")


if __name__ == "__main__":
    main()
