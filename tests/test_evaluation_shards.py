"""A sharded evaluation (submitit jobs, each relaxing a slice into its own cache) gives the single-process table,
and a re-run after a dead shard relaxes only what is missing."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from plaidpp.evaluation.evaluate import evaluate
from plaidpp.evaluation.shards import relax_shard, shard_bounds

from .conftest import few_site_rows

# Differ between a fresh relaxation and a cache hit by design: whether it was cached, and the timings of the
# run that relaxed it.
PROVENANCE = ["relax_cached", "relax_seconds", "relax_potential_seconds"]


def test_shard_bounds_cover_every_row_once_in_order():
    for n_rows, n_shards in [(10, 3), (2, 4), (0, 2), (7, 7)]:
        bounds = shard_bounds(n_rows, n_shards)
        assert len(bounds) == n_shards and bounds[0][0] == 0 and bounds[-1][1] == n_rows
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1


@pytest.mark.slow
def test_two_local_shards_merge_into_the_single_process_table_and_resume(tmp_path, mp20_rows, make_config):
    small = mp20_rows[mp20_rows["split"] == "test"].sample(80, random_state=11)
    small = few_site_rows(small, 5)
    folder = tmp_path / "generated"
    folder.mkdir()
    for k, cif in enumerate(small["cif"]):
        (folder / f"c{k}.cif").write_text(cif)
    (folder / "c9_again.cif").write_text(small["cif"].iloc[0])  # a duplicate: uniqueness spans the shards
    (folder / "junk.cif").write_text("data_x\n_not a crystal\n")
    common = ("mlip=chgnet", "relax.steps=20", f"samples={folder}", "progress=false")

    single = make_config("evaluate", *common, f"out={tmp_path / 'single'}", f"cache.file={tmp_path / 'one.sqlite'}")
    evaluate(single)

    sharded = make_config("evaluate", *common, f"out={tmp_path / 'sharded'}", f"cache.file={tmp_path / 'm.sqlite'}",
                          "shards.n=2")
    first = relax_shard(sharded, 0)  # shard 0 finished before the run died; shard 1 never wrote its marker
    assert first["rows"] == [0, 4] and first["n_relaxed_now"] >= 1
    summary = evaluate(sharded)
    assert summary["shards"]["submitted_now"] == 1  # only the missing shard, as a submitit job
    assert summary["shards"]["relaxed_in_shards"] >= summary["n_relaxed"]

    a = pd.read_parquet(tmp_path / "single" / "structures.parquet")
    b = pd.read_parquet(tmp_path / "sharded" / "structures.parquet")
    relaxed = b["relax_steps"].notna()
    assert relaxed.sum() >= 4 and b.loc[relaxed, "relax_cached"].all()  # the merge pass relaxed nothing itself
    pd.testing.assert_frame_equal(a.drop(columns=PROVENANCE), b.drop(columns=PROVENANCE))
    assert not b.loc[b["sample_id"] == "c9_again.cif", "is_unique"].iloc[0]
    one = json.loads((tmp_path / "single" / "summary.json").read_text())
    for rate in ("validity_structural", "stability_rate", "uniqueness_rate", "novelty_rate", "sun_rate"):
        assert one[rate] == summary[rate]
