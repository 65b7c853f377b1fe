"""Samples to evaluate, from any generator: ``read_input(path, fmt, ...)`` -> one row per requested sample.

Formats (``samples_format``, detected from the path unless forced):

- ``jsonl``   the project's own: one object per line with ``text`` (crystal text), ``repr``, ``spacegroup``;
              other keys pass through. Attempt files of ``plaidpp sample`` keep their ``final`` rows.
- ``cif_dir`` a folder of ``*.cif`` files (MatterGen's unzipped ``generated_crystals_cif.zip``, CrystaLLM), one
              sample per file, id = the file name (the relative path with ``inputs.recursive``);
- ``csv``     a CSV or gzipped CSV with a ``cif`` column (``csv_column``), cdvae / DiffCSP / FlowMM / MatterGen
              style, one sample per row, id = ``material_id`` / ``id`` / the row number;
- ``extxyz``  an extended-XYZ file of frames (MatterGen's ``generated_crystals.extxyz``), id = the frame number.

A structure input becomes a row with ``repr: cif`` and the CIF text as its ``text``, so the scoring sees one
kind of row; a file or row that cannot become a crystal (unreadable, disordered, empty) is still one requested
sample, counted with its reason by the parse step. Bad input for the whole run (no such path, a folder with
no CIF, a CSV without the column) is one ``UserError`` line.

**Bounded, and only what was pointed at** (``InputSettings``; the threat model is in docs/evaluation.md): a
file is read only if it is a regular file (a FIFO would block forever, ``/dev/zero`` never ends); a symlinked CIF
is refused unless ``follow_symlinks``, and then only if its target lies inside the folder; every crystal's text
is capped (``max_text_kb``) and the whole input, as decompressed, too (``max_total_mb``), as is the row count
(``max_rows``). A refused file or row is a counted sample (``input:<reason>``) and the rest is still scored; an
input over a whole-input limit stops the run with one line before any relaxation.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from plaidpp.errors import UserError
from plaidpp.settings.evaluation import InputSettings
from plaidpp.settings.stages import FORMATS  # noqa: F401 - the choices of samples_format

ID_COLUMNS = ("material_id", "id", "sample_id", "name")
# Why a file or row of the input did not become a text to parse (the parse step counts ``input:<reason>``).
INPUT_REASONS = ("symlink", "symlink_outside", "not_regular_file", "text_too_large", "not_utf8", "unreadable")
CSV_CHUNK_ROWS = 10_000  # rows per pandas chunk: bounded memory per step whatever the file holds


@dataclass
class Samples:
    """The rows of one input and what was left out of it."""

    rows: list[dict[str, Any]]
    skipped: Counter[str] = field(default_factory=Counter)  # folder entries that are not samples, by kind
    n_duplicate_ids: int = 0  # ids made unique ("<id>#2", ...)

    def describe(self) -> dict[str, Any]:
        return {"input_skipped": dict(sorted(self.skipped.items())), "n_duplicate_ids": self.n_duplicate_ids}


class _Budget:
    """Bytes read from the whole input (decompressed), against ``max_total_mb``."""

    def __init__(self, path: Path, limits: InputSettings) -> None:
        self.path, self.limit, self.used = path, limits.max_total_mb * 2**20, 0

    def take(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise UserError(f"{self.path}: more than {self.limit // 2**20} MiB of input (decompressed); raise "
                            "inputs.max_total_mb or split the input")


class _Metered(io.RawIOBase):
    """A binary stream that charges every byte it yields to a ``_Budget`` (a gzip bomb stops at the limit)."""

    def __init__(self, raw: IO[bytes], budget: _Budget) -> None:
        self.raw, self.budget = raw, budget

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        self.budget.take(len(data))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self.raw.close()
        super().close()


class NotRegularFile(OSError):
    """A FIFO, a device, a socket or a folder where a file was expected."""


def _open_regular(path: Path, follow: bool = True) -> IO[bytes]:
    """``path`` opened for reading if it is a regular file; ``OSError`` otherwise. O_NONBLOCK: opening a FIFO
    returns at once instead of waiting for a writer, and fstat on the open file then refuses it (no race
    between a check and the open)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegularFile(f"{path} is not a regular file")
    return os.fdopen(fd, "rb")


def _stream(path: Path, budget: _Budget) -> IO[str]:
    """The input file as metered text, gunzipped when it is gzip (by its first bytes, not its name)."""
    try:
        raw = _open_regular(path)
    except OSError:
        raise UserError(f"{path} is not a regular file that can be read (a FIFO, a device, no permission?)") from None
    binary: IO[bytes] = raw
    if raw.read(2) == b"\x1f\x8b":
        raw.seek(0)
        binary = gzip.GzipFile(fileobj=raw)
    else:
        raw.seek(0)
    return io.TextIOWrapper(io.BufferedReader(_Metered(binary, budget)), encoding="utf-8", errors="replace")


def _too_many(path: Path, limits: InputSettings) -> UserError:
    return UserError(f"{path}: more than {limits.max_rows:,} samples; raise inputs.max_rows or split the input")


def _text_row(sample_id: str, text: str | None, reason: str | None = None) -> dict[str, Any]:
    """A structure input's row: the text to parse (or the reason there is none) and a hash of what was read."""
    row = {"sample_id": sample_id, "text": text if isinstance(text, str) else "", "repr": "cif", "spacegroup": None}
    if reason:
        row["input_reason"] = reason
    if isinstance(text, str):
        row["input_sha256"] = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()
    return row


def _check_row(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a JSON object")
    group = row.get("spacegroup")
    if group is not None and (isinstance(group, bool) or not isinstance(group, int) or not 1 <= group <= 230):
        # silently treating it as unconditional would change n_conditional and every S.S.U.N. figure
        raise UserError(f"{where}: spacegroup {group!r} is not a space-group number 1..230 (or null)")
    return row


def _jsonl(path: Path, limits: InputSettings, budget: _Budget) -> Samples:
    rows = []
    with _stream(path, budget) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{number}: not JSON ({exc.msg})") from None
            row = _check_row(row, f"{path}:{number}")
            if isinstance(row.get("text"), str) and len(row["text"]) > limits.max_text_kb * 1024:
                row = {**row, "text": "", "input_reason": "text_too_large"}
            rows.append(row)
            if len(rows) > limits.max_rows:
                raise _too_many(path, limits)
    return Samples(rows)


def _read_cif_file(file: Path, root: Path, limits: InputSettings, budget: _Budget) -> tuple[str | None, str | None]:
    """(text, None) or (None, reason) for one entry of a CIF folder; never follows a link out of ``root``."""
    follow = file.is_symlink()
    if follow:
        if not limits.follow_symlinks:
            return None, "symlink"
        try:
            target = file.resolve(strict=True)
        except (OSError, RuntimeError):  # dangling or a loop
            return None, "unreadable"
        if not target.is_relative_to(root.resolve()):
            return None, "symlink_outside"
    try:
        with _open_regular(file, follow=follow) as fh:
            cap = limits.max_text_kb * 1024
            if os.fstat(fh.fileno()).st_size > cap:
                return None, "text_too_large"
            data = fh.read(cap + 1)
    except NotRegularFile:
        return None, "not_regular_file"
    except OSError:
        return None, "unreadable"
    if len(data) > cap:  # grew while being read
        return None, "text_too_large"
    budget.take(len(data))
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, "not_utf8"


def _cif_entries(folder: Path, root: Path, limits: InputSettings, skipped: Counter[str]) -> Iterator[Path]:
    """The CIF entries of ``folder`` in name order (sub-folders too with ``recursive``); the rest is counted."""
    with os.scandir(folder) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    for entry in entries:
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            if limits.recursive:
                yield from _cif_entries(path, root, limits, skipped)
            else:
                skipped["subfolder"] += 1
        elif entry.name.lower().endswith(".cif"):
            yield path
        else:
            skipped["not_cif"] += 1


def _cif_dir(path: Path, limits: InputSettings, budget: _Budget) -> Samples:
    skipped: Counter[str] = Counter()
    rows = []
    for file in _cif_entries(path, path, limits, skipped):
        if len(rows) >= limits.max_rows:
            raise _too_many(path, limits)
        text, reason = _read_cif_file(file, path, limits, budget)
        rows.append(_text_row(file.relative_to(path).as_posix(), text, reason))
    if not rows:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(skipped.items())) or "empty"
        raise UserError(f"{path} holds no *.cif files ({kinds}; inputs.recursive=true reads sub-folders)")
    return Samples(rows, skipped)


def _csv(path: Path, column: str, limits: InputSettings, budget: _Budget) -> Samples:
    import pandas as pd

    cap = limits.max_text_kb * 1024
    rows: list[dict[str, Any]] = []
    try:
        with _stream(path, budget) as fh:
            for chunk in pd.read_csv(fh, keep_default_na=False, na_values=[""], chunksize=CSV_CHUNK_ROWS):
                if column not in chunk.columns:
                    raise UserError(f"{path} has no {column!r} column (csv_column=...); columns: "
                                    f"{', '.join(map(str, chunk.columns[:8]))}")
                ids = next((chunk[c].astype(str) for c in ID_COLUMNS if c in chunk.columns), chunk.index.astype(str))
                for sample_id, cif in zip(ids, chunk[column], strict=True):
                    text = cif if isinstance(cif, str) and cif.strip() else None
                    too_large = text is not None and len(text) > cap
                    rows.append(_text_row(str(sample_id), None if too_large else text,
                                          "text_too_large" if too_large else None))
                if len(rows) > limits.max_rows:
                    raise _too_many(path, limits)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - pandas raises many types for a broken file
        raise UserError(f"{path} is not a readable CSV ({type(exc).__name__})") from None
    return Samples(rows)


def _extxyz(path: Path, limits: InputSettings, budget: _Budget) -> Samples:
    from ase.io import iread
    from pymatgen.io.ase import AseAtomsAdaptor

    rows = []
    try:
        with _stream(path, budget) as fh:
            for number, atoms in enumerate(iread(fh, index=":", format="extxyz")):
                if number >= limits.max_rows:
                    raise _too_many(path, limits)
                try:
                    cif = AseAtomsAdaptor.get_structure(atoms).to(fmt="cif")
                except Exception:  # noqa: BLE001 - a frame without a cell, say: counted by the parse step
                    cif = None
                rows.append(_text_row(str(number), cif))
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - ase raises many types for a broken file
        raise UserError(f"{path} is not a readable extended-XYZ file ({type(exc).__name__}: {exc})"[:300]) from None
    return Samples(rows)


def _unique_ids(samples: Samples) -> None:
    """Ids are keys of the results: a repeated id becomes ``<id>#2``, ``<id>#3`` ..., counted and logged."""
    seen: Counter[str] = Counter()
    for row in samples.rows:
        sample_id = row.get("sample_id")
        if sample_id is None:
            continue
        seen[sample_id] += 1
        if seen[sample_id] > 1:
            row["sample_id"] = f"{sample_id}#{seen[sample_id]}"
            samples.n_duplicate_ids += 1
    if samples.n_duplicate_ids:
        warnings.warn(f"{samples.n_duplicate_ids} repeated sample ids were made unique (<id>#2, ...)", stacklevel=3)


def read_input(path: str | Path, fmt: str, csv_column: str, limits: InputSettings,
               limit: int | None = None) -> Samples:
    """One row per requested sample (see the module docstring), and what the input left out."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise UserError(f"samples not found: {path} (--samples FILE.jsonl | DIR_OF_CIFS | FILE.csv | FILE.extxyz)")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "cif_dir" and not path.is_dir():
        raise UserError(f"samples_format=cif_dir needs a folder, got {path}")
    if fmt != "cif_dir" and path.is_dir():
        raise UserError(f"{path} is a folder; samples_format=cif_dir reads a folder of CIFs")
    budget = _Budget(path, limits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen/ase chatter per file
        if fmt == "csv":
            samples = _csv(path, csv_column, limits, budget)
        else:
            samples = {"jsonl": _jsonl, "cif_dir": _cif_dir, "extxyz": _extxyz}[fmt](path, limits, budget)
    if limit is not None:
        samples.rows = samples.rows[:limit]
    if not samples.rows:
        raise UserError(f"{path} has no samples")
    _unique_ids(samples)
    return samples


def read_samples(path: str | Path, fmt: str = "auto", csv_column: str = "cif", limit: int | None = None,
                 limits: InputSettings | None = None) -> list[dict[str, Any]]:
    """The rows of ``read_input`` (benchmarks and the novelty reference, which need nothing else)."""
    return read_input(path, fmt, csv_column, limits or InputSettings(), limit).rows


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


# Why a CIF did not become one ordered crystal (the parse step's reasons for ``repr: cif`` rows).
CIF_REASONS = ("no_structure", "cif_unreadable", "unknown_element", "disordered")


def parse_cif(text: str):
    """A CIF sample -> an ordered Structure, or ``ValueError(reason, detail)`` with a reason of CIF_REASONS and
    the library's message as detail (never a key: messages carry data)."""
    from pymatgen.core import DummySpecies, Structure

    if not text.strip():
        raise ValueError("no_structure", "")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_str(text, fmt="cif")
    except Exception as exc:  # noqa: BLE001 - pymatgen raises many types for malformed CIF
        raise ValueError("cif_unreadable", f"{type(exc).__name__}: {exc}"[:200]) from None
    # pymatgen reads a symbol it does not know ("Xx") as a dummy species; nothing downstream can score it
    unknown = sorted({sp.symbol for site in structure for sp in site.species if isinstance(sp, DummySpecies)})
    if unknown:
        raise ValueError("unknown_element", ",".join(unknown)[:200])
    if not structure.is_ordered:
        raise ValueError("disordered", "")  # partial occupancies: not one crystal to relax
    structure.remove_oxidation_states()
    return structure
