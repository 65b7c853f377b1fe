"""Uniqueness among generated crystals and novelty against the training set (pymatgen StructureMatcher).

Both use StructureMatcher at its defaults (ltol 0.2, stol 0.3, angle_tol 5°, primitive cells, scaled volumes)
and only compare crystals with the same reduced formula - the matcher would reject other pairs anyway, so
bucketing changes no answer and turns an O(N^2) scan into many small ones.

Uniqueness: crystals fall into equivalence classes; the first member (lowest row) of each class is
"unique", later members are duplicates. (Matching is not transitive; we compare against class
representatives only, as pymatgen's ``group_structures`` does.)

Novelty: a crystal is novel when no training crystal of its reduced formula matches it. The training set is
exactly the one the model was trained on (``novelty.reference``, default the MP-20 rows of the splits it
trained on); its path, size and sha256 go into summary.json.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pandas as pd
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from plaidpp.errors import UserError
from plaidpp.evaluation.symmetry import SymmetryTimeout, time_budget


@lru_cache(maxsize=1)
def matcher() -> StructureMatcher:
    return StructureMatcher()  # defaults on purpose: ltol=0.2, stol=0.3, angle_tol=5 (MatterGen, FlowMM)


class Matching:
    """StructureMatcher.fit under a time budget, where a failure or time-out counts as "no match" and is
    counted in ``failures`` (reported in summary.json as ``matcher_failures``).

    ``fit(a, b)`` is not symmetric (pymatgen's ``symmetric=False`` default: the lattice search looks for ``b``'s
    lattices within ``ltol``/``angle_tol`` of ``a``'s), so a crystal strained by ~3 % can match its original one
    way and not the other (a ThSiSe pair in the MatterGen agreement benchmark: ``fit(original, strained)`` False,
    ``fit(strained, original)`` True). The callers put the crystal being judged first, as MatterGen's metric code
    does, so the two agree per crystal.
    """

    def __init__(self, time_limit_s: float) -> None:
        self.time_limit_s = time_limit_s
        self.failures: Counter[str] = Counter()

    def fit(self, a: Structure, b: Structure) -> bool:
        try:
            with time_budget(self.time_limit_s):
                return bool(matcher().fit(a, b))
        except SymmetryTimeout:
            self.failures["timeout"] += 1
        except Exception as exc:  # noqa: BLE001 - a degenerate lattice can make the matcher raise
            self.failures[f"error:{type(exc).__name__}"] += 1
        return False


def uniqueness(structures: list[Structure | None], matching: Matching) -> tuple[list[bool | None], list[int | None]]:
    """Per crystal: (is first of its class, class id). None where the structure is missing."""
    is_unique: list[bool | None] = [None] * len(structures)
    class_id: list[int | None] = [None] * len(structures)
    reps: dict[str, list[tuple[int, Structure]]] = {}
    next_class = 0
    for i, s in enumerate(structures):
        if s is None:
            continue
        bucket = reps.setdefault(s.composition.reduced_formula, [])
        for cid, rep in bucket:
            if matching.fit(s, rep):  # new crystal first, as MatterGen does (fit is not symmetric)
                is_unique[i], class_id[i] = False, cid
                break
        else:
            bucket.append((next_class, s))
            is_unique[i], class_id[i] = True, next_class
            next_class += 1
    return is_unique, class_id


class TrainingSet:
    """Training crystals by reduced formula; CIFs are parsed lazily, one formula bucket at a time.

    Sources (``novelty.reference``), each read into a (formula, cif) table:

    - ``mp20``: the MP-20 rows of the configured data source (the vendored rows, or the full cdvae files) in
      ``novelty.splits``, the splits the model was trained on (params.yaml ``data.train_splits``);
    - a CSV (or .csv.gz) with a ``cif`` column (MP-20's own layout: its ``split`` column is filtered by the
      splits too), a ``plaidpp prepare`` JSONL, a folder of CIFs or an extxyz file: a user's own reference.

    A source without a formula column (CIFs, extxyz) is parsed once and cached under ``paths.cache``, keyed by
    the sha256 of its content, so a large reference costs its parsing once.
    """

    def __init__(self, formulas: list[str], cifs: list[str], path: str, sha256: str) -> None:
        self.path = path
        self.sha256 = sha256
        self.size = len(cifs)
        self._cifs: dict[str, list[str]] = {}
        for formula, cif in zip(formulas, cifs, strict=True):
            self._cifs.setdefault(formula, []).append(cif)
        self._parsed: dict[str, list[Structure]] = {}

    @classmethod
    def load(cls, path: str | Path, splits: list[str] | None, cache_dir: str | Path | None = None) -> TrainingSet:
        """One reference file or folder (see the class docstring); ``splits`` filters a ``split`` column."""
        path = Path(path)
        if not path.exists():
            raise UserError(f"novelty reference not found: {path} (novelty.reference=[FILE_OR_FOLDER])")
        digest = _content_digest(path, splits)
        cached = Path(cache_dir) / "novelty" / f"{digest[:24]}.csv.gz" if cache_dir else None
        if cached is not None and cached.is_file():
            frame = pd.read_csv(cached, keep_default_na=False)
        else:
            frame = _reference_table(path, splits)
            if cached is not None:
                from plaidpp.io import atomic_write

                atomic_write(cached, lambda tmp: frame.to_csv(tmp, index=False, compression="gzip"))
        return cls(list(frame["formula"]), list(frame["cif"]), str(path), digest)

    @classmethod
    def load_all(cls, paths: list[str | Path], splits: list[str] | None,
                 cache_dir: str | Path | None = None) -> TrainingSet:
        """One reference from several sources (e.g. the train and val rows a model was trained on together)."""
        parts = [cls.load(p, splits, cache_dir) for p in paths]
        if not parts:
            raise UserError("novelty.reference is an empty list")
        formulas = [f for part in parts for f, cifs in part._cifs.items() for _ in cifs]
        cifs = [c for part in parts for group in part._cifs.values() for c in group]
        digest = hashlib.sha256("".join(part.sha256 for part in parts).encode()).hexdigest()
        return cls(formulas, cifs, ",".join(part.path for part in parts), digest)

    def _bucket(self, formula: str) -> list[Structure]:
        if formula not in self._parsed:
            self._parsed[formula] = [Structure.from_str(c, fmt="cif") for c in self._cifs.get(formula, [])]
        return self._parsed[formula]

    def is_novel(self, structure: Structure, matching: Matching) -> bool:
        bucket = self._bucket(structure.composition.reduced_formula)
        return not any(matching.fit(structure, ref) for ref in bucket)  # same order as uniqueness()

    def describe(self) -> dict[str, object]:
        return {"novelty_reference": self.path, "novelty_reference_size": self.size,
                "novelty_reference_sha256": self.sha256}


def _content_digest(path: Path, splits: list[str] | None) -> str:
    digest = hashlib.sha256(json.dumps(sorted(splits or [])).encode())
    files = sorted(path.glob("*.cif")) if path.is_dir() else [path]
    for file in files:
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _formulas_from_cifs(cifs: list[str]) -> list[str]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [Structure.from_str(c, fmt="cif").composition.reduced_formula for c in cifs]


def _reference_table(path: Path, splits: list[str] | None) -> pd.DataFrame:
    """(formula, cif) of a reference source; the formula is the reduced formula (MP-20's ``pretty_formula``,
    checked equal for all 18,106 vendored rows)."""
    name = path.name.lower().removesuffix(".gz")
    if path.is_dir() or name.endswith((".extxyz", ".xyz")):
        from plaidpp.evaluation.inputs import read_samples

        rows = [r for r in read_samples(path, "cif_dir" if path.is_dir() else "extxyz") if r["text"]]
        cifs = [r["text"] for r in rows]
        return pd.DataFrame({"formula": _formulas_from_cifs(cifs), "cif": cifs})
    if name.endswith(".jsonl"):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        frame = pd.DataFrame({"cif": [r["cif"] for r in rows], "formula": [r.get("formula") for r in rows]})
    elif name.endswith(".csv"):
        frame = pd.read_csv(path, keep_default_na=False)
        if "cif" not in frame.columns:
            raise UserError(f"novelty reference {path} has no 'cif' column")
        if splits and "split" in frame.columns:
            frame = frame[frame["split"].isin(splits)]
        frame = frame.rename(columns={"pretty_formula": "formula"})
    else:
        raise UserError(f"novelty reference must be a CSV, a prepare JSONL, a folder of CIFs or extxyz: {path}")
    if "formula" not in frame or frame["formula"].isna().any() or (frame["formula"] == "").any():
        frame["formula"] = _formulas_from_cifs(list(frame["cif"]))
    return frame[["formula", "cif"]].reset_index(drop=True)


def novelty(structures: list[Structure | None], train: TrainingSet, matching: Matching) -> list[bool | None]:
    return [None if s is None else train.is_novel(s, matching) for s in structures]
