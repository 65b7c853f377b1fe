"""Samples to evaluate, from any generator: ``read_samples(path, fmt)`` -> one row per requested sample.

Formats (``samples_format``, detected from the path unless forced):

- ``jsonl``   the project's own: one object per line with ``text`` (crystal text), ``repr``, ``spacegroup``;
              other keys pass through. Attempt files of ``plaidpp sample`` keep their ``final`` rows.
- ``cif_dir`` a folder of ``*.cif`` files (MatterGen's unzipped ``generated_crystals_cif.zip``, CrystaLLM), one
              sample per file, id = the file name;
- ``csv``     a CSV or gzipped CSV with a ``cif`` column (``csv_column``), cdvae / DiffCSP / FlowMM / MatterGen
              style, one sample per row, id = ``material_id`` / ``id`` / the row number;
- ``extxyz``  an extended-XYZ file of frames (MatterGen's ``generated_crystals.extxyz``), id = the frame number.

A structure input becomes a row with ``repr: cif`` and the CIF text as its ``text``, so the scoring sees one
kind of row; a file or row that cannot become a crystal (unreadable, disordered, empty) is still one requested
sample, counted with its reason by the parse step. Bad input for the whole run (no such path, a folder with
no CIF, a CSV without the column) is one ``UserError`` line.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from plaidpp.errors import UserError
from plaidpp.settings.stages import FORMATS  # noqa: F401 - the choices of samples_format
ID_COLUMNS = ("material_id", "id", "sample_id", "name")


def detect_format(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir():
        return "cif_dir"
    if name.endswith((".jsonl", ".json", ".jsonl.gz")):
        return "jsonl"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith((".extxyz", ".xyz", ".extxyz.gz")):
        return "extxyz"
    raise UserError(f"cannot tell the format of {path}; set samples_format=jsonl|cif_dir|csv|extxyz")


def _check_row(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a JSON object")
    group = row.get("spacegroup")
    if group is not None and (isinstance(group, bool) or not isinstance(group, int) or not 1 <= group <= 230):
        # silently treating it as unconditional would change n_conditional and every S.S.U.N. figure
        raise UserError(f"{where}: spacegroup {group!r} is not a space-group number 1..230 (or null)")
    return row


def _jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open() as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{number}: not JSON ({exc.msg})") from None
            rows.append(_check_row(row, f"{path}:{number}"))
    return rows


def _structure_row(sample_id: str, cif: str | None) -> dict[str, Any]:
    return {"sample_id": sample_id, "text": cif if isinstance(cif, str) else "", "repr": "cif", "spacegroup": None}


def _cif_dir(path: Path) -> list[dict[str, Any]]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".cif")
    if not files:
        raise UserError(f"{path} holds no *.cif files")
    rows = []
    for file in files:
        try:
            text = file.read_text()
        except (OSError, UnicodeDecodeError):
            text = None  # an unreadable file is still a requested sample: counted by the parse step
        rows.append(_structure_row(file.name, text))
    return rows


def _csv(path: Path, column: str) -> list[dict[str, Any]]:
    import pandas as pd

    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except Exception as exc:  # noqa: BLE001 - pandas raises many types for a broken file
        raise UserError(f"{path} is not a readable CSV ({type(exc).__name__})") from None
    if column not in frame.columns:
        raise UserError(f"{path} has no {column!r} column (csv_column=...); columns: {', '.join(map(str, frame.columns[:8]))}")
    ids = next((frame[c].astype(str) for c in ID_COLUMNS if c in frame.columns), frame.index.astype(str))
    return [_structure_row(str(i), cif if isinstance(cif, str) and cif.strip() else None)
            for i, cif in zip(ids, frame[column], strict=True)]


def _extxyz(path: Path) -> list[dict[str, Any]]:
    from ase.io import read
    from pymatgen.io.ase import AseAtomsAdaptor

    try:
        frames = read(str(path), index=":", format="extxyz")
    except Exception as exc:  # noqa: BLE001 - ase raises many types for a broken file
        raise UserError(f"{path} is not a readable extended-XYZ file ({type(exc).__name__}: {exc})"[:300]) from None
    rows = []
    for number, atoms in enumerate(frames):
        try:
            structure = AseAtomsAdaptor.get_structure(atoms)
            cif = structure.to(fmt="cif")
        except Exception:  # noqa: BLE001 - a frame without a cell, say: counted by the parse step
            cif = None
        rows.append(_structure_row(str(number), cif))
    return rows


def read_samples(path: str | Path, fmt: str = "auto", csv_column: str = "cif",
                 limit: int | None = None) -> list[dict[str, Any]]:
    """One row per requested sample (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"samples not found: {path} (--samples FILE.jsonl | DIR_OF_CIFS | FILE.csv | FILE.extxyz)")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "cif_dir" and not path.is_dir():
        raise UserError(f"samples_format=cif_dir needs a folder, got {path}")
    if fmt != "cif_dir" and path.is_dir():
        raise UserError(f"{path} is a folder; samples_format=cif_dir reads a folder of CIFs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen/ase chatter per file
        rows = {"jsonl": _jsonl, "cif_dir": _cif_dir, "extxyz": _extxyz}[fmt](path) if fmt != "csv" else _csv(path, csv_column)
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise UserError(f"{path} has no samples")
    return rows


def parse_cif(text: str):
    """A CIF sample -> an ordered Structure, or ``ValueError`` with the counted reason (``cif_unreadable``,
    ``disordered``, ``no_structure``)."""
    from pymatgen.core import Structure

    if not text.strip():
        raise ValueError("no_structure")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_str(text, fmt="cif")
    except Exception:  # noqa: BLE001 - pymatgen raises many types for malformed CIF
        raise ValueError("cif_unreadable") from None
    if not structure.is_ordered:
        raise ValueError("disordered")  # partial occupancies: not one crystal to relax
    structure.remove_oxidation_states()
    return structure
