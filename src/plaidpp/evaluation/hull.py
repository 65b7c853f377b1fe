"""Reference convex hulls: energy above the hull for a composition and a formation energy.

All sources are reduced to one table - (entry id, formula, formation energy per atom against the
matbench-discovery 2023-02-07 elemental references). The hull energy at a composition is the lowest formation
energy any mixture of reference phases of that composition reaches: a linear program over the entries whose
elements are a subset of the chemical system (every element pinned at 0 eV/atom), solved with HiGHS. It is the
lower convex hull's value there, the number pymatgen's ``PhaseDiagram.get_hull_energy_per_atom`` returns
(tests compare the two on real systems), without building the hull: qhull's cost explodes with the number of
elements, and a generated crystal can name 19 (an RLIP policy at T = 0.9 wrote such crystals; one
PhaseDiagram of that system ran for over 20 minutes without finishing). The entry matrix of a system is built
once (``lru_cache``).

Sources (``conf/hull/<name>.yaml: source``):

- ``matbench_discovery``: the 2023-02-07 MP ComputedStructureEntries the paper uses
  (``2023-02-07-mp-computed-structure-entries.json.gz``, pandas ``to_json`` of columns material_id/entry;
  entry energies are MP2020-corrected as MP serves them). Plain JSON, loaded with ``ComputedEntry.from_dict``.
  Optionally the patched phase diagram ``2023-02-07-ppd-mp.pkl.gz``: a *pickle*, so it is only read when
  ``allow_pickle: true`` is set explicitly (unpickling runs code from the file).
- ``table``: a vendored formation-energy table (``data/raw/hull/``, built by ``make_hull_tables.py``, already
  on the 2023-02-07 references): ``hull=mp_gga_merged`` (the offline default: MP-20 merged with a later MP
  GGA/GGA+U snapshot, 95,640 materials) or ``hull=mp20_fallback`` (MP-20 alone, 39,753 materials; it omits
  phases with more than 20 atoms or above ~0.08 eV/atom, so it flatters novel compositions). Every run on a
  table says so in the log and in ``summary.json`` (``hull_warning``, the preset's ``table_warning``).
- ``auto``: matbench_discovery when its file exists, else the table.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Composition

from plaidpp.errors import UserError
from plaidpp.evaluation.energy import ElementalReferences
from plaidpp.settings.evaluation import HullSettings

log = logging.getLogger(__name__)

class ReferenceHull:
    """A set of reference phases in formation-energy space (eV/atom) with per-chemical-system hulls."""

    def __init__(
        self,
        table: pd.DataFrame,
        refs: ElementalReferences,
        source: str,
        description: str,
        warning: str | None = None,
    ) -> None:
        self.refs = refs
        self.source = source
        self.description = description
        self.warning = warning
        self.n_entries = len(table)
        by_elements: dict[frozenset[str], list[tuple[Composition, float, str]]] = {}
        for entry_id, formula, e_form in zip(
            table["material_id"], table["formula"], table["e_form_per_atom"], strict=True
        ):
            comp = Composition(formula)
            key = frozenset(el.symbol for el in comp.elements)
            by_elements.setdefault(key, []).append((comp, float(e_form), str(entry_id)))
        self._by_elements = by_elements
        self._system = lru_cache(maxsize=4096)(self._build_system)

    def missing_elements(self, composition: Composition) -> list[str]:
        return self.refs.missing(composition)

    def _build_system(self, chemsys: tuple[str, ...], exclude: frozenset[str] = frozenset()
                      ) -> tuple[np.ndarray, np.ndarray]:
        """The reference phases of a chemical system as (atom fractions: elements x phases, eV/atom): the
        elements themselves at 0, then every table entry whose elements are a subset of ``chemsys``."""
        elements = set(chemsys)
        columns = list(np.eye(len(chemsys)))  # one pure-element column per element
        energies = [0.0] * len(chemsys)
        for key, phases in self._by_elements.items():
            if key <= elements:
                for comp, e_form, entry_id in phases:
                    if entry_id not in exclude:
                        columns.append(np.array([comp.get_atomic_fraction(el) for el in chemsys]))
                        energies.append(e_form)
        return np.stack(columns, axis=1), np.array(energies)

    def hull_energy(self, composition: Composition, exclude: frozenset[str] = frozenset()) -> float:
        """The formation energy (eV/atom) of the hull at ``composition``: min over mixtures of reference phases
        with that composition (fractions w >= 0; the atom balance makes them sum to 1)."""
        from scipy.optimize import linprog

        chemsys = tuple(sorted(el.symbol for el in composition.elements))
        fractions, energies = self._build_system(chemsys, exclude) if exclude else self._system(chemsys)
        target = np.array([composition.get_atomic_fraction(el) for el in chemsys])
        result = linprog(energies, A_eq=fractions, b_eq=target, bounds=(0, None), method="highs")
        if result.status != 0:  # cannot happen while every element has its reference column; say so if it does
            raise RuntimeError(f"hull of {composition.reduced_formula}: {result.message}")
        return float(result.fun)

    def e_above_hull(
        self, composition: Composition, e_form_per_atom: float, exclude: frozenset[str] = frozenset()
    ) -> float:
        """E_hull in eV/atom (negative below the current hull). KeyError names elements without a reference.

        ``exclude``: entry ids left out of the hull (calibration: score a known crystal against the *other*
        phases, as a generated crystal would be); such systems are not cached.
        """
        missing = self.missing_elements(composition)
        if missing:
            raise KeyError(",".join(missing))
        return float(e_form_per_atom - self.hull_energy(composition, exclude))

    def summary(self) -> dict[str, Any]:
        return {
            "hull_source": self.source,
            "hull_description": self.description,
            "hull_n_entries": self.n_entries,
            "hull_elemental_refs": Path(self.refs.source).name,
            "hull_warning": self.warning,
        }


# ----------------------------------------------------------------------------------------------- loaders


def _read_json_any(path: Path) -> Any:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        return json.load(fh)


def table_from_mp_entries(path: Path, refs: ElementalReferences) -> pd.DataFrame:
    """matbench-discovery ``*-mp-computed-structure-entries.json(.gz)`` -> formation-energy table.

    Accepts pandas' default ``to_json`` layout ({"material_id": {...}, "entry": {...}}), the records layout
    ([{"material_id": ..., "entry": {...}}, ...]) and a bare list of entry dicts. Entry energies are taken as
    stored (MP serves them MP2020-corrected; ``entry.energy`` includes ``energy_adjustments``).
    """
    from pymatgen.entries.computed_entries import ComputedEntry

    raw = _read_json_any(path)
    if isinstance(raw, dict) and "entry" in raw:
        entries = list(raw["entry"].values()) if isinstance(raw["entry"], dict) else list(raw["entry"])
    elif isinstance(raw, list):
        entries = [r["entry"] if isinstance(r, dict) and "entry" in r else r for r in raw]
    else:
        raise UserError(f"{path}: not a matbench-discovery MP entries file (no 'entry' column)")
    rows = []
    n_skipped = 0
    for d in entries:
        d = dict(d)
        d.pop("structure", None)  # ComputedEntry is enough for energies and compositions; far faster
        d["@class"] = "ComputedEntry"
        entry = ComputedEntry.from_dict(d)
        try:
            e_form = refs.formation_energy_per_atom(entry.composition, entry.energy)
        except KeyError:
            n_skipped += 1
            continue
        rows.append((entry.entry_id, entry.composition.formula.replace(" ", ""), e_form))
    if n_skipped:
        log.info("%s: %d entries skipped (elements without a 2023-02-07 reference)", path.name, n_skipped)
    return pd.DataFrame(rows, columns=["material_id", "formula", "e_form_per_atom"])


def table_from_ppd_pickle(path: Path, refs: ElementalReferences) -> pd.DataFrame:
    """Entries of matbench-discovery's ``2023-02-07-ppd-mp.pkl.gz`` (a pickled PatchedPhaseDiagram).

    Only called when the config sets ``allow_pickle: true``: unpickling executes code named in the file.
    """
    import pickle

    with gzip.open(path, "rb") as fh:
        ppd = pickle.load(fh)  # noqa: S301 - gated by hull.allow_pickle, documented
    rows = []
    for entry in ppd.all_entries:
        try:
            e_form = refs.formation_energy_per_atom(entry.composition, entry.energy)
        except KeyError:
            continue
        rows.append((getattr(entry, "entry_id", None) or "", entry.composition.formula.replace(" ", ""), e_form))
    return pd.DataFrame(rows, columns=["material_id", "formula", "e_form_per_atom"])


def _file_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]


def _cached_table(path: Path, cache_dir: Path | None, build) -> pd.DataFrame:
    """Parsing 154k MP entries takes minutes; keep the derived three-column table in the cache."""
    if cache_dir is None:
        return build()
    cached = cache_dir / f"hull-table-{_file_key(path)}.csv.gz"
    if cached.exists():
        return pd.read_csv(cached, keep_default_na=False)
    table = build()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".tmp{os.getpid()}")
    table.to_csv(tmp, index=False, compression="gzip")
    os.replace(tmp, cached)
    return table


def _mbd_file(cfg: HullSettings) -> Path | None:
    for value in (cfg.entries_file, cfg.ppd_file):
        if value and Path(value).is_file():
            return Path(value)
    return None


def load_hull(cfg: HullSettings, cache_dir: str | Path | None = None) -> ReferenceHull:
    """Build the reference hull that ``conf/hull/<name>.yaml`` describes (see the module docstring)."""
    source = cfg.source
    refs_path = Path(cfg.elemental_refs)
    if not refs_path.is_file():
        raise UserError(f"elemental reference file not found: {refs_path} (hull.elemental_refs)")
    refs = ElementalReferences.from_json(refs_path)
    cache = Path(cache_dir) / "hull" if cache_dir else None

    if source == "auto":
        source = "matbench_discovery" if _mbd_file(cfg) else "table"
        if source == "table":
            log.warning("hull=auto: no matbench-discovery file at %s; using %s", cfg.entries_file, cfg.table_name)

    if source == "matbench_discovery":
        entries_file = cfg.entries_file
        ppd_file = cfg.ppd_file
        if entries_file and Path(str(entries_file)).is_file():
            path = Path(str(entries_file))
            table = _cached_table(path, cache, lambda: table_from_mp_entries(path, refs))
        elif ppd_file and Path(str(ppd_file)).is_file():
            path = Path(str(ppd_file))
            if not cfg.allow_pickle:
                raise UserError(
                    f"{path} is a pickle; loading it runs code from the file. Set hull.allow_pickle=true "
                    "if you trust it, or use the entries JSON (hull.entries_file)"
                )
            table = _cached_table(path, cache, lambda: table_from_ppd_pickle(path, refs))
        else:
            raise UserError(
                f"matbench-discovery MP entries not found (hull.entries_file={entries_file}); download "
                "2023-02-07-mp-computed-structure-entries.json.gz (see docs/evaluation.md) or use hull=mp_gga_merged"
            )
        return ReferenceHull(
            table, refs, "matbench_discovery", f"MP 2023-02-07 entries from {path.name} ({len(table)} entries)"
        )

    if source == "table":
        path = Path(cfg.table)
        if not path.is_file():
            raise UserError(f"hull table not found: {path} (hull.table)")
        table = pd.read_csv(path, keep_default_na=False, na_values=[""], usecols=["material_id", "formula",
                                                                                  "e_form_per_atom"])
        # "NaN" is a formula (Na3N-type); the formula column must stay a string
        table["formula"] = table["formula"].astype(str)
        log.warning(cfg.table_warning)
        return ReferenceHull(table, refs, cfg.table_name, f"{cfg.table_name}: {path.name} ({len(table)} entries)",
                             cfg.table_warning)

    raise UserError(f"unknown hull source {source!r}; choose auto, matbench_discovery or table")

