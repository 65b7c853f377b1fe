"""Uniqueness among generated crystals and novelty against the training set (pymatgen StructureMatcher).

Both use StructureMatcher at its defaults (ltol 0.2, stol 0.3, angle_tol 5°, primitive cells, scaled volumes)
and only compare crystals with the same reduced formula - the matcher would reject other pairs anyway, so
bucketing changes no answer and turns an O(N^2) scan into many small ones.

Uniqueness: crystals fall into equivalence classes; the first member (lowest row) of each class is
"unique", later members are duplicates. (Matching is not transitive; we compare against class
representatives only, as pymatgen's ``group_structures`` does.)

Novelty: a crystal is novel when no training crystal of its reduced formula matches it. The training set is
exactly the one the model was trained on (``novelty.reference_file``); its path, size and sha256 go into
summary.json.
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
    counted in ``failures`` (reported in summary.json as ``matcher_failures``)."""

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
            if matching.fit(rep, s):
                is_unique[i], class_id[i] = False, cid
                break
        else:
            bucket.append((next_class, s))
            is_unique[i], class_id[i] = True, next_class
            next_class += 1
    return is_unique, class_id


class TrainingSet:
    """Training crystals by reduced formula; CIFs are parsed lazily, one formula bucket at a time."""

    def __init__(self, formulas: list[str], cifs: list[str], path: str, sha256: str) -> None:
        self.path = path
        self.sha256 = sha256
        self.size = len(cifs)
        self._cifs: dict[str, list[str]] = {}
        for formula, cif in zip(formulas, cifs, strict=True):
            self._cifs.setdefault(formula, []).append(cif)
        self._parsed: dict[str, list[Structure]] = {}

    @classmethod
    def load(cls, path: str | Path, split: str | None) -> TrainingSet:
        """A processed JSONL (``cif`` field, e.g. data/processed/wyckoff/train.jsonl) or an MP-20 CSV
        (``cif`` column, rows filtered by ``split`` when the file has a split column)."""
        path = Path(path)
        if not path.is_file():
            raise UserError(
                f"novelty reference not found: {path}; run `plaidpp prepare` or set novelty.reference_file=[FILE]"
            )
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        name = path.name.removesuffix(".gz")
        if name.endswith(".jsonl"):
            opener = gzip.open if path.suffix == ".gz" else open
            cifs, formulas = [], []
            with opener(path, "rt") as fh:
                for line in fh:
                    if line.strip():
                        row = json.loads(line)
                        cifs.append(row["cif"])
                        formulas.append(row.get("formula"))
            frame = pd.DataFrame({"cif": cifs, "formula": formulas})
        elif name.endswith(".csv"):
            frame = pd.read_csv(path, keep_default_na=False)
            if split and "split" in frame.columns:
                frame = frame[frame["split"] == split]
            frame = frame.rename(columns={"pretty_formula": "formula"})
        else:
            raise UserError(f"novelty reference must be .jsonl or .csv(.gz): {path}")
        if "formula" not in frame or frame["formula"].isna().any() or (frame["formula"] == "").any():
            frame["formula"] = [Structure.from_str(c, fmt="cif").composition.reduced_formula for c in frame["cif"]]
        # pretty_formula in MP-20 is the reduced formula (checked for all 18,106 vendored rows)
        return cls(list(frame["formula"]), list(frame["cif"]), str(path), digest)

    @classmethod
    def load_all(cls, paths: str | Path | list[str | Path], split: str | None) -> TrainingSet:
        """One reference from several files (e.g. the train and val JSONL a model was trained on together)."""
        if isinstance(paths, (str, Path)):
            return cls.load(paths, split)
        parts = [cls.load(p, split) for p in paths]
        if not parts:
            raise UserError("novelty.reference_file is an empty list")
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
        return not any(matching.fit(ref, structure) for ref in bucket)

    def describe(self) -> dict[str, object]:
        return {"novelty_reference": self.path, "novelty_reference_size": self.size,
                "novelty_reference_sha256": self.sha256}


def novelty(structures: list[Structure | None], train: TrainingSet, matching: Matching) -> list[bool | None]:
    return [None if s is None else train.is_novel(s, matching) for s in structures]
