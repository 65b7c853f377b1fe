"""Run inside the side virtual environment of ``mattergen_agreement.py`` (mattergen 1.0.3, numpy<2, smact<3):
MatterGen's own per-structure metric code on the crystals of a JSON file.

    .venv-mattergen/bin/python benchmarks/mattergen_side.py crystals.json out.json

``crystals.json``: {"samples": [{"id", "structure": pymatgen JSON}, ...], "reference": [cif, ...]}. ``out.json``: per sample
``structure_valid`` (``structure_validity``), ``smact_valid`` (``is_smact_valid``), ``unique``
(``OrderedDatasetUniquenessComputer``) and ``novel`` (not matched in the reference by the ordered dataset
matcher), both with MatterGen's ``DefaultOrderedStructureMatcher`` = pymatgen's StructureMatcher defaults.
No plaidpp code is imported here.
"""

from __future__ import annotations

import json
import sys
import warnings

warnings.filterwarnings("ignore")


def main(crystals_file: str, out_file: str) -> None:
    from mattergen.evaluation.metrics.structure import is_smact_valid, structure_validity
    from mattergen.evaluation.reference.reference_dataset import ReferenceDataset
    from mattergen.evaluation.utils.dataset_matcher import OrderedDatasetUniquenessComputer, get_dataset_matcher
    from mattergen.evaluation.utils.structure_matcher import DefaultOrderedStructureMatcher
    from pymatgen.core import Structure
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    data = json.loads(open(crystals_file).read())
    samples = [Structure.from_dict(json.loads(s["structure"])) for s in data["samples"]]
    entries = [ComputedStructureEntry(s, 0.0, entry_id=i) for i, s in enumerate(samples)]
    dataset = ReferenceDataset.from_entries("samples", entries)
    reference = ReferenceDataset.from_entries(
        "mp20_train", [ComputedStructureEntry(Structure.from_str(c, fmt="cif"), 0.0, entry_id=i, data={"material_id": f"ref{i}"})
                       for i, c in enumerate(data["reference"])])
    matcher = DefaultOrderedStructureMatcher()
    unique = OrderedDatasetUniquenessComputer(matcher)(dataset)
    matches = get_dataset_matcher(True, matcher)(dataset, reference)  # sample index -> matching reference ids
    out = []
    for i, (sample, structure) in enumerate(zip(data["samples"], samples)):
        try:
            smact_ok = bool(is_smact_valid(structure))
        except Exception as exc:  # noqa: BLE001 - recorded, compared as a disagreement
            smact_ok = f"error:{type(exc).__name__}"
        out.append({"id": sample["id"], "structure_valid": bool(structure_validity(structure)), "smact_valid": smact_ok,
                    "unique": bool(unique[i]), "novel": i not in matches})
    with open(out_file, "w") as fh:
        json.dump(out, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
