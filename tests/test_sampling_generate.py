"""The sampler with real (untrained and briefly trained) tiny Qwen2 models: attempts, resampling, resume."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from plaidpp.errors import UserError
from plaidpp.prompts import spacegroup_prompt, unconditional_prompt
from plaidpp.representation import DECODE_REASONS, get
from plaidpp.sampling.generate import final_rows, generate, requested_spacegroup
from plaidpp.settings.sampling import SamplerSettings

CRYSTAL = (
    "Ca8Sb4O2\nSpacegroup: I4/mmm\nabc: 4.71 4.71 16.39\nangles: 90.00 90.00 90.00\nSites (14)\n"
    "Ca 0.000 0.000 0.335 4e\nCa 0.000 0.500 0.000 4c\nSb 0.000 0.000 0.140 4e\nO 0.000 0.000 0.500 2b"
)


def _tiny_model(tokenizer, seed: int = 0):
    from plaidpp.config import compose
    from plaidpp.training.models import build_tiny_model

    from .conftest import TINY_MODEL

    cfg = compose("sft", [*TINY_MODEL, f"model.init_seed={seed}", "model.architecture.max_position_embeddings=512"])
    return build_tiny_model(cfg.model, tokenizer).eval()


def _generate(model, tokenizer, prompts, n, *, temperature, out_path, seed, top_p=1.0, batch_size=128,
              max_attempts=5, max_new_tokens=384, constraint="none", engine="compact", max_atoms=20, **kwargs):
    sampler = SamplerSettings(constraint=constraint, top_p=top_p, batch_size=batch_size, max_attempts=max_attempts,
                              max_new_tokens=max_new_tokens, engine=engine, max_atoms=max_atoms)
    return generate(model, tokenizer, prompts, n, sampler=sampler, temperature=temperature, repr="wyckoff",
                    out_path=out_path, seed=seed, model_id="test-model", progress=False, **kwargs)


@pytest.fixture(scope="module")
def tokenizer():
    from plaidpp.training.tokenizer import train_crystal_tokenizer

    corpus = [unconditional_prompt() + CRYSTAL, spacegroup_prompt(139) + CRYSTAL] * 20
    return train_crystal_tokenizer(corpus, 300)


@pytest.fixture(scope="module")
def garbage_model(tokenizer):
    """A randomly initialised model: its samples essentially never decode."""
    return _tiny_model(tokenizer)


@pytest.fixture(scope="module")
def parrot_model(tokenizer):
    """A model overfit on one crystal, so most of its samples decode (resampling then stops early)."""
    model = _tiny_model(tokenizer, seed=1)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = tokenizer(unconditional_prompt() + CRYSTAL + tokenizer.eos_token, return_tensors="pt")["input_ids"]
    torch.manual_seed(0)
    for _ in range(150):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_garbage_model_finishes_with_every_failure_counted(garbage_model, tokenizer, tmp_path):
    out = tmp_path / "samples.jsonl"
    prompts = [unconditional_prompt(), spacegroup_prompt(15)]
    stats = _generate(garbage_model, tokenizer, prompts, n=[5, 3], temperature=1.0, top_p=0.9, batch_size=4,
                      max_attempts=3, out_path=out, seed=1, max_new_tokens=24)
    rows = _rows(out)
    assert stats.n_slots == 8 and stats.finals == 8
    assert len(rows) == stats.attempts == 8 * 3  # nothing decodes, so each slot used every attempt
    assert all(not r["decoded"] and r["decode_reason"] in DECODE_REASONS for r in rows)
    assert sum(stats.decode_reasons.values()) == len(rows)
    finals = [r for r in rows if r["final"]]
    assert sorted(r["index"] for r in finals) == list(range(8)) and all(r["attempt"] == 2 for r in finals)
    # Slots 0-4 are unconditional, 5-7 ask for C2/c; the schema carries what A and C read.
    assert [requested_spacegroup(r["prompt"]) for r in finals] == [None] * 5 + [15] * 3
    assert {r["spacegroup"] for r in finals} == {None, 15}
    assert set(rows[0]) == {"index", "attempt", "text", "repr", "spacegroup", "prompt", "temperature", "top_p",
                            "seed", "run_seed", "constraint", "crowded", "loosened", "decoded", "decode_reason",
                            "refused", "final"}


def test_resampling_stops_at_the_first_decoded_attempt(parrot_model, tokenizer, tmp_path):
    out = tmp_path / "samples.jsonl"
    stats = _generate(parrot_model, tokenizer, [unconditional_prompt()], n=16, temperature=0.7, top_p=1.0,
                      batch_size=16, max_attempts=4, out_path=out, seed=0, max_new_tokens=80)
    rows = _rows(out)
    per_slot = Counter(r["index"] for r in rows)
    finals = {r["index"]: r for r in rows if r["final"]}
    assert len(finals) == 16
    assert stats.finals_decoded >= 8  # the parrot mostly repeats its crystal
    for index, row in finals.items():
        if row["decoded"]:
            assert row["attempt"] == per_slot[index] - 1  # kept the first success, tried no more
            get("wyckoff").decode(row["text"])
        else:
            assert per_slot[index] == 4
    assert all(not r["decoded"] for r in rows if not r["final"])


def test_compact_engine_matches_model_generate(parrot_model, tokenizer):
    """Greedy decoding is deterministic, so the KV-cache loop that drops finished rows must agree with
    ``model.generate`` token for token, including left-padded prompts of different lengths."""
    from plaidpp.sampling.generate import ENGINES

    prompts = [unconditional_prompt(), spacegroup_prompt(139), unconditional_prompt() + "Ca8"]
    compact, n_compact = ENGINES["compact"](parrot_model, tokenizer, prompts, 0.0, 1.0, 150, 0)
    reference, n_reference = ENGINES["hf"](parrot_model, tokenizer, prompts, 0.0, 1.0, 150, 0)
    assert compact == reference and n_compact == n_reference
    assert compact[0] == CRYSTAL  # the parrot learnt its crystal
    # Sampling settings are honoured: a tiny nucleus is greedy, and seeds reproduce.
    nucleus, _ = ENGINES["compact"](parrot_model, tokenizer, prompts, 1.0, 1e-6, 150, 5)
    assert nucleus == compact
    first = ENGINES["compact"](parrot_model, tokenizer, prompts * 4, 1.5, 1.0, 20, 7)
    assert first == ENGINES["compact"](parrot_model, tokenizer, prompts * 4, 1.5, 1.0, 20, 7)


def test_killed_run_resumes_without_losing_or_duplicating(garbage_model, tokenizer, tmp_path):
    out = tmp_path / "samples.jsonl"
    args = dict(temperature=1.0, top_p=1.0, batch_size=3, max_attempts=2, out_path=out, seed=3,
                max_new_tokens=12)
    prompts = [unconditional_prompt(), spacegroup_prompt(194)]

    class Killed(Exception):
        pass

    def kill_after_two_batches(stats):
        if stats.attempts >= 6:
            raise Killed

    with pytest.raises(Killed):
        _generate(garbage_model, tokenizer, prompts, n=4, on_batch=kill_after_two_batches, **args)
    written = out.read_text()
    assert 0 < written.count("\n") < 16
    with open(out, "a") as handle:  # a write cut off by the kill
        handle.write('{"index": 7, "attempt": 0, "te')
    stats = _generate(garbage_model, tokenizer, prompts, n=4, **args)
    rows = _rows(out)
    keys = [(r["index"], r["attempt"]) for r in rows]
    assert len(keys) == len(set(keys)) == 16  # 8 slots x 2 attempts, none twice, the partial line gone
    assert out.read_text().startswith(written)  # rows from before the kill were kept as they were
    assert stats.n_final_before + stats.finals == 8
    assert len(final_rows(out)) == 8
    # A finished file is left alone, and a different run is refused rather than mixed in.
    assert _generate(garbage_model, tokenizer, prompts, n=4, **args).attempts == 0
    with pytest.raises(UserError, match="n_slots 8 -> 9"):
        _generate(garbage_model, tokenizer, [unconditional_prompt()], n=9, **args)
    with pytest.raises(UserError, match="temperature 1.0 -> 0.5"):  # any setting that changes a sample
        _generate(garbage_model, tokenizer, prompts, n=4, **{**args, "temperature": 0.5})


def test_sample_stage_writes_rows_metrics_and_mlflow(tokenizer, garbage_model, tmp_path, make_config):
    import mlflow

    from plaidpp.sampling.sample import sample

    model_dir = tmp_path / "models" / "sft"
    garbage_model.save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))
    cfg = make_config("sample", "prompts.n_unconditional=3", "prompts.n_per_spacegroup=1", "sampler.max_attempts=2",
                      "sampler.max_new_tokens=8", "temperature=1.3", tracking=True)
    summary = sample(cfg)
    finals = final_rows(cfg.out_file)
    assert summary["n_requested"] == 3 + 7 == len(finals)
    assert [r["spacegroup"] for r in finals] == [None] * 3 + [1, 15, 38, 119, 143, 194, 216]
    assert {r["temperature"] for r in finals} == {1.3}
    assert json.loads(Path(cfg.metrics_file).read_text())["file_final"] == 10
    mlflow.set_tracking_uri(cfg.tracking.uri)
    run = mlflow.search_runs(experiment_names=[cfg.tracking.experiment], output_format="list")[0]
    assert run.data.metrics["crystals_per_s"] > 0 and run.data.params["temperature"] == "1.3"
    # a re-run with another temperature on the same file is refused before the model is loaded
    with pytest.raises(UserError, match="temperature 1.3 -> 0.9"):
        sample(make_config("sample", "prompts.n_unconditional=3", "prompts.n_per_spacegroup=1",
                           "sampler.max_attempts=2", "sampler.max_new_tokens=8", "temperature=0.9"))


def test_sample_refuses_a_model_trained_on_another_representation(tokenizer, garbage_model, tmp_path, make_config):
    from plaidpp.sampling.sample import sample

    garbage_model.save_pretrained(str(tmp_path / "m"))
    tokenizer.save_pretrained(str(tmp_path / "m"))
    (tmp_path / "m" / "training_data.json").write_text(json.dumps({"repr": "coords"}))
    with pytest.raises(UserError, match="repr=coords"):
        sample(make_config("sample", f"model_dir={tmp_path}/m"))


def test_a_second_writer_of_one_samples_file_is_refused(garbage_model, tokenizer, tmp_path):
    """Two processes on one file would both sample every unfinished slot; the second is refused at once."""
    from plaidpp.io import exclusive

    out = tmp_path / "samples.jsonl"
    with exclusive(out, "another sampler"):  # what a running sampler holds
        with pytest.raises(UserError, match="being written by another process"):
            _generate(garbage_model, tokenizer, [unconditional_prompt()], n=2, temperature=1.0, out_path=out, seed=0,
                      max_new_tokens=4)
    assert not out.exists() or out.read_text() == ""


@pytest.mark.parametrize(("engine", "top_p"), [("compact", 1.0), ("compact", 0.95), ("hf", 1.0)])
def test_a_garbage_model_under_the_constraint_writes_only_texts_that_decode(garbage_model, tokenizer, tmp_path,
                                                                            engine, top_p):
    """A random model's draws are nearly all forbidden, so this runs the redraw path (compact, top_p 1), the
    mask-every-step path (top_p < 1) and the logits processor of model.generate; every text decodes at the first
    attempt and a space-group prompt's group is the text's."""
    out = tmp_path / "samples.jsonl"
    prompts = [unconditional_prompt(), spacegroup_prompt(15), spacegroup_prompt(194)]
    stats = _generate(garbage_model, tokenizer, prompts, n=[4, 3, 3], temperature=1.0, top_p=top_p, batch_size=5,
                      max_attempts=3, out_path=out, seed=2, constraint="grammar+spacegroup", engine=engine,
                      max_atoms=4, max_new_tokens=300)
    rows = _rows(out)
    assert stats.decoded == stats.attempts >= 10 and stats.constraint_dead_ends == 0
    assert all(row["constraint"] == "grammar+spacegroup" and row["decoded"] for row in rows)
    if engine == "compact" and top_p == 1.0:
        assert stats.constraint_redraws > 0  # the fast path was exercised, not bypassed
    representation = get("wyckoff")
    from plaidpp.evaluation.symmetry import spacegroup_number

    for row in rows:
        structure = representation.decode(row["text"])
        assert len(structure) <= 4 * 4  # max_atoms primitive atoms, at most a 4x centred conventional cell
        if row["spacegroup"] is None:
            assert row["refused"] is None and row["attempt"] == 0 and row["final"]
            continue
        assert structure.properties["spacegroup_number"] == row["spacegroup"], row["text"]  # the stated group
        # a crystal of a higher group than the stated one is refused and resampled (the last try is kept)
        achieved = spacegroup_number(structure)[0]
        assert (row["refused"] is None) == (achieved == row["spacegroup"]), row
        assert row["final"] == (row["refused"] is None or row["attempt"] == 2)
    assert sum(stats.refused.values()) == sum(row["refused"] is not None for row in rows)
    # a row whose distance rule never fell back keeps every two atoms more than min_distance apart
    from plaidpp.evaluation.validity import structural_validity

    assert stats.constraint_crowded == sum(row["crowded"] > 0 for row in rows)
    assert stats.constraint_loosened == sum(row["loosened"] > 0 for row in rows)
    for row in rows:
        if row["crowded"] == 0:
            assert structural_validity(representation.decode(row["text"]), 0.5).min_distance > 0.5, row["text"]
    record = json.loads(out.with_name(out.name + ".run.json").read_text())
    assert record["constraint"] == "grammar+spacegroup" and record["max_atoms"] == 4
    assert record["min_distance"] == 0.5 and record["covalent_fraction"] == SamplerSettings().covalent_fraction
