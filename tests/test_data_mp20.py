"""MP-20 loading: vendored rows, and the full-file checksum gate (tested on files made here, no network)."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess

import pytest

from plaidpp.config import compose
from plaidpp.data.mp20 import (
    CDVAE_COLUMNS,
    fetch_full,
    git_blob_sha1,
    load_rows,
    row_properties,
    verify_full_split,
)
from plaidpp.errors import UserError
from tests.conftest import VENDORED_MP20

VENDORED_SHA256 = "d575f7dce298d76c84bfd196ebbb5dff4341e0dab8736fc1862a4cc9239803bf"  # data/raw/mp20/PROVENANCE.md


def test_vendored_file_is_the_one_its_provenance_describes():
    assert hashlib.sha256(VENDORED_MP20.read_bytes()).hexdigest() == VENDORED_SHA256


def test_vendored_rows_keep_the_original_splits_and_columns():
    cfg = compose("prepare")
    counts = {split: len(load_rows(cfg.data, split)) for split in ("train", "val", "test")}
    assert counts == {"train": 3420, "val": 7344, "test": 7342}
    rows = load_rows(cfg.data, "train")
    assert set(CDVAE_COLUMNS) <= set(rows.columns)
    props = row_properties(rows.iloc[0])
    assert set(props) == {"formula", "e_above_hull", "formation_energy_per_atom", "band_gap", "spacegroup"}


def test_git_blob_sha1_equals_git_hash_object(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(",material_id\n0,mp-1\n")
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True).stdout
    assert git_blob_sha1(path) == expected.strip()


def _full_cfg(tmp_path, mp20_sample):
    """A 'full' MP-20 folder made here from real rows, with its true hashes in the config."""
    hashes = {}
    for i, split in enumerate(("train", "val", "test")):
        frame = mp20_sample(5, seed=i, split=split)[["orig_index", *CDVAE_COLUMNS]].rename(columns={"orig_index": ""})
        path = tmp_path / f"{split}.csv"
        frame.to_csv(path, index=False)
        hashes[split] = git_blob_sha1(path)
    return compose("prepare", ["data=full", f"data.dir={tmp_path}",
                               *(f"data.git_blob_sha1.{split}={sha}" for split, sha in hashes.items())])


def test_full_mp20_loads_when_the_hashes_match(tmp_path, mp20_sample):
    cfg = _full_cfg(tmp_path, mp20_sample)
    rows = load_rows(cfg.data, "val")
    assert len(rows) == 5 and set(rows["split"]) == {"val"} and "orig_index" in rows


def test_full_mp20_is_refused_when_a_file_was_altered(tmp_path, mp20_sample):
    cfg = _full_cfg(tmp_path, mp20_sample)
    path = tmp_path / "test.csv"
    path.write_text(path.read_text().replace("mp-", "mq-", 1))
    with pytest.raises(UserError, match="git blob sha1"):
        load_rows(cfg.data, "test")


def test_the_configured_full_hashes_are_the_cdvae_ones():
    cfg = compose("prepare", ["data=full"])
    assert cfg.data.git_blob_sha1 == {
        "train": "b1c9d498565ac2fd8d075a51ff2ef5e51ba6c21f",
        "val": "7efe4d7ebeb4f460ceaad35e5326c42111d9c9a1",
        "test": "5dc643041df53f5ce4970a79930ad262b4f07acd",
    }
    with pytest.raises(UserError, match="missing"):
        verify_full_split(cfg.data.dir + "/nonexistent.csv", cfg.data.git_blob_sha1["train"])


def test_fetch_downloads_from_a_mirror_and_verifies_each_split(tmp_path, mp20_sample):
    """The download path, offline: a file:// mirror of real rows stands in for cdvae's GitHub URL."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    cfg = _full_cfg(mirror, mp20_sample)
    data = dataclasses.replace(cfg.data, url=f"file://{mirror}/{{split}}.csv", dir=str(tmp_path / "fetched"))
    paths = fetch_full(data)
    assert [p.name for p in paths] == ["train.csv", "val.csv", "test.csv"]
    assert all(p.read_bytes() == (mirror / p.name).read_bytes() for p in paths)


def test_fetch_without_a_reachable_source_is_a_one_line_error(tmp_path):
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "plaidpp.cli", "fetch", "data=full", f"data.dir={tmp_path / 'out'}",
         f"data.url='file://{tmp_path}/absent/{{split}}.csv'"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1 and "could not download" in error_lines[0], result.stderr
    assert not list((tmp_path / "out").glob("*.csv")), "a failed download must not leave a split behind"
