"""Uniqueness and novelty with StructureMatcher defaults on real MP-20 crystals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Structure

from plaidpp.config import PROJECT_ROOT
from plaidpp.errors import UserError
from plaidpp.evaluation.novelty import Matching, TrainingSet, matcher, novelty, uniqueness

CSV = PROJECT_ROOT / "data/raw/mp20/mp20_partial_merged.csv.gz"
MATCH = Matching(10.0)  # novelty.matcher_time_limit_s


def test_matcher_uses_pymatgen_default_tolerances():
    m = matcher()
    assert (m.ltol, m.stol, m.angle_tol) == (0.2, 0.3, 5)


def test_duplicates_strained_copies_and_polymorphs(mp20_sample):
    rows = mp20_sample(3, seed=2, split="test")
    a, b, c = (Structure.from_str(x, fmt="cif") for x in rows["cif"])
    strained = a.copy()
    strained.apply_strain(0.02)  # 2 % strain: within ltol, the same crystal
    supercell = a.copy()
    supercell.make_supercell([2, 1, 1])  # same crystal, other cell
    flags, classes = uniqueness([a, b, None, strained, c, supercell, a], MATCH)
    assert flags == [True, True, None, False, True, False, False]
    assert classes[3] == classes[5] == classes[6] == classes[0] != classes[1]


def test_training_crystals_are_not_novel_and_test_crystals_are(mp20_sample):
    train = TrainingSet.load(CSV, ["train"])
    assert train.size == 3420
    seen = [Structure.from_str(x, fmt="cif") for x in mp20_sample(15, seed=4, split="train")["cif"]]
    unseen = [Structure.from_str(x, fmt="cif") for x in mp20_sample(15, seed=4, split="test")["cif"]]
    assert novelty(seen, train, MATCH) == [False] * 15
    # MP-20 splits share no material; a test crystal may still match a train polymorph, but rarely
    assert np.mean(novelty(unseen, train, MATCH)) >= 0.9


def test_training_set_from_processed_jsonl_records_path_size_and_hash(tmp_path, mp20_sample):
    rows = mp20_sample(5, seed=8, split="train")
    path = tmp_path / "train.jsonl"
    with path.open("w") as fh:
        for cif, formula in zip(rows["cif"], rows["pretty_formula"], strict=True):
            fh.write(json.dumps({"cif": cif, "formula": formula, "split": "train"}) + "\n")
    train = TrainingSet.load(path, None)
    described = train.describe()
    assert described["novelty_reference_size"] == 5 and len(described["novelty_reference_sha256"]) == 64
    assert not train.is_novel(Structure.from_str(rows["cif"][0], fmt="cif"), MATCH)
    with pytest.raises(UserError, match="novelty reference not found"):
        TrainingSet.load(tmp_path / "absent.jsonl", None)


def test_reference_from_train_and_val_files_covers_both(tmp_path, mp20_sample):
    """The tiny model trains on train + val, so a val crystal it reproduces must not count as novel."""
    paths = []
    for split in ("train", "val"):
        rows = mp20_sample(4, seed=3, split=split)
        paths.append(tmp_path / f"{split}.jsonl")
        paths[-1].write_text("".join(json.dumps({"cif": c, "formula": f}) + "\n"
                                     for c, f in zip(rows["cif"], rows["pretty_formula"], strict=True)))
    val_crystal = Structure.from_str(mp20_sample(4, seed=3, split="val")["cif"].iloc[0], fmt="cif")
    assert TrainingSet.load_all(paths[:1], None).is_novel(val_crystal, MATCH)
    both = TrainingSet.load_all(paths, None)
    assert both.size == 8 and not both.is_novel(val_crystal, MATCH)
    assert both.describe()["novelty_reference"] == f"{paths[0]},{paths[1]}"
