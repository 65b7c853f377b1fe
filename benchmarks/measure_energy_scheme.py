"""Which energy scale does an MLIP predict: raw GGA/GGA+U, or MP2020-corrected?

For N vendored MP-20 test structures (DFT-relaxed already, so single-point energies suffice) it computes the
formation energy against the matbench-discovery 2023-02-07 elemental references twice - from the MLIP energy
as predicted, and after adding the MP2020 correction - and prints each one's MAE against MP-20's DFT
formation energy (which MP reports MP2020-corrected). The smaller MAE names the scheme; the result is
recorded in conf/mlip/<name>.yaml as ``apply_mp2020_correction``.

    python benchmarks/measure_energy_scheme.py --mlip sevennet --n 30
    python benchmarks/measure_energy_scheme.py --mlip fairchem mlip.model=uma-m-1p1   # with the extra + weights
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from plaidpp.config import PROJECT_ROOT, compose
from plaidpp.evaluation.energy import ElementalReferences, mp2020_correction
from plaidpp.evaluation.mlip import load_calculator
from plaidpp.runtime import set_torch_threads
from plaidpp.settings.evaluation import MLIP_PRESETS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mlip", default="sevennet", choices=MLIP_PRESETS)
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the mlip group (mlip.checkpoint=...)")
    args = parser.parse_args()

    rows = pd.read_csv(PROJECT_ROOT / "data/raw/mp20/mp20_partial_merged.csv.gz", keep_default_na=False)
    test = rows[rows["split"] == "test"]
    # Oversample crystals the correction touches (O/F/S/TM with U) so the two hypotheses separate clearly.
    sample = test.sample(n=args.n, random_state=args.seed)
    refs = ElementalReferences.from_json(
        PROJECT_ROOT / "data/raw/hull/matbench_discovery_2023-02-07-mp-elemental-reference-entries.json.gz"
    )
    spec = compose("evaluate", [f"mlip={args.mlip}", "samples=-", "out=-", *args.overrides]).mlip
    set_torch_threads(1)  # as in an evaluation worker, so the per-call cost transfers
    calc = load_calculator(spec)
    raw_err, corr_err, corrections, call_seconds, n_atoms = [], [], [], [], []
    start = time.monotonic()
    for cif, e_dft in zip(sample["cif"], sample["formation_energy_per_atom"].astype(float), strict=True):
        structure = Structure.from_str(cif, fmt="cif")
        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.calc = calc
        t0 = time.perf_counter()
        energy = float(atoms.get_potential_energy())
        call_seconds.append(time.perf_counter() - t0)
        n_atoms.append(len(atoms))
        correction = mp2020_correction(structure, energy)
        comp = structure.composition
        raw_err.append(refs.formation_energy_per_atom(comp, energy) - e_dft)
        corr_err.append(refs.formation_energy_per_atom(comp, energy + correction) - e_dft)
        corrections.append(correction / comp.num_atoms)
    raw_err, corr_err, corrections = map(np.asarray, (raw_err, corr_err, corrections))
    touched = np.abs(corrections) > 1e-6
    print(f"mlip={spec.cache_tag()} n={args.n} seed={args.seed} ({time.monotonic() - start:.0f} s)")
    # The first call pays for lazy initialisation; the median of the rest is the cost of one force call.
    print(f"  one energy+forces call: median {1000 * np.median(call_seconds[1:]):.0f} ms "
          f"(mean {np.mean(n_atoms):.1f} atoms as the MP-20 CIF gives them; one torch thread)")
    print(f"  structures with a non-zero MP2020 correction: {touched.sum()} (mean {corrections[touched].mean():+.3f} eV/atom)")
    print(f"  formation-energy MAE, energy as predicted    : {np.abs(raw_err).mean():.3f} eV/atom")
    print(f"  formation-energy MAE, + MP2020 correction     : {np.abs(corr_err).mean():.3f} eV/atom")
    print(f"  on corrected structures only: as predicted {np.abs(raw_err[touched]).mean():.3f}, "
          f"+MP2020 {np.abs(corr_err[touched]).mean():.3f} eV/atom")
    verdict = np.abs(corr_err).mean() < np.abs(raw_err).mean()
    print(f"  => apply_mp2020_correction: {str(verdict).lower()}")


if __name__ == "__main__":
    main()
