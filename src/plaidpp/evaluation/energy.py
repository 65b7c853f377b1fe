"""Energy bookkeeping: put an MLIP total energy on the MP2020 scale and turn it into a formation energy.

Every reference hull here lives in formation-energy space against the matbench-discovery 2023-02-07 MP
elemental reference entries (GGA, lowest-energy MP polymorph per element). Elemental energies carry no
MP2020 correction (MP2020 skips single elements), so "MP2020-corrected total energy minus elemental
references" is the formation energy MP itself reports.

An MLIP trained on raw GGA/GGA+U energies needs MP2020 added; one trained on corrected energies (CHGNet)
must not get it twice (measured: doing so raises CHGNet's formation-energy MAE from 0.021 to 0.229
eV/atom). ``conf/mlip/*.yaml: apply_mp2020_correction`` records which, with the measurement in
docs/evaluation.md.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

from pymatgen.core import Composition, Structure
from pymatgen.entries.compatibility import MaterialsProject2020Compatibility
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry


@lru_cache(maxsize=1)
def _compat() -> MaterialsProject2020Compatibility:
    # check_potcar=False: MLIP entries have no POTCARs; the run type and U values below stand in for them.
    return MaterialsProject2020Compatibility(check_potcar=False)


def mp_hubbards(composition: Composition) -> dict[str, float]:
    """The U values MP's GGA+U calculations use for this composition (empty dict = plain GGA).

    MP applies U to Co, Cr, Fe, Mn, Mo, Ni, V, W only in oxides and fluorides; the values come from the
    MP2020 compatibility config pymatgen ships (so they cannot drift from the corrections).
    """
    u_settings = _compat().u_settings
    symbols = {el.symbol for el in composition.elements}
    anion = "F" if "F" in symbols else ("O" if "O" in symbols else None)
    if anion is None:
        return {}
    return {el: u for el, u in u_settings[anion].items() if el in symbols}


def mp2020_correction(structure: Structure, energy_total: float) -> float:
    """MP2020 energy correction (eV, whole cell) for a GGA(+U)-scale total energy of ``structure``.

    Raises pymatgen's CompatibilityError (e.g. for compositions MP2020 excludes) - callers count it.
    """
    hubbards = mp_hubbards(structure.composition)
    entry = ComputedStructureEntry(
        structure,
        energy_total,
        # software != "vasp" skips the POTCAR check; run type and U values select the correction branch.
        parameters={"run_type": "GGA+U" if hubbards else "GGA", "hubbards": hubbards, "software": "mlip"},
    )
    processed = _compat().process_entry(entry, inplace=False)
    if processed is None:
        raise ValueError("MaterialsProject2020Compatibility rejected the entry")
    return float(processed.correction)


class ElementalReferences:
    """Lowest-energy elemental energies per atom (eV/atom) that define formation energies.

    Loaded from a matbench-discovery style ``{element: ComputedEntry dict}`` JSON (gzip or plain). This is
    plain JSON read with ``ComputedEntry.from_dict``: no pickle.
    """

    def __init__(self, energies: dict[str, float], source: str = "") -> None:
        self.energies = dict(energies)
        self.source = source

    @classmethod
    def from_json(cls, path: str | Path) -> ElementalReferences:
        path = Path(path)
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as fh:
            raw = json.load(fh)
        energies = {}
        for element, entry_dict in raw.items():
            entry = ComputedEntry.from_dict(entry_dict)
            energies[str(element)] = float(entry.energy_per_atom)
        return cls(energies, source=str(path))

    def missing(self, composition: Composition) -> list[str]:
        return sorted(el.symbol for el in composition.elements if el.symbol not in self.energies)

    def formation_energy_per_atom(self, composition: Composition, energy_total: float) -> float:
        """(E_total - sum_i n_i e_i) / N in eV/atom; KeyError names a missing element."""
        missing = self.missing(composition)
        if missing:
            raise KeyError(",".join(missing))
        ref = sum(amount * self.energies[el.symbol] for el, amount in composition.items())
        return (energy_total - ref) / composition.num_atoms
