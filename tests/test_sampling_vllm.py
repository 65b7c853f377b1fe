"""``sampler.engine=vllm`` against the project's own sampler, on real tiny Qwen2 models (the ``.[vllm]`` extra).

Runs where vLLM imports (``make test-vllm`` builds the side environment ``.venv-vllm`` with the CPU build);
``make test`` skips it. These models are 128 wide with 2 heads (head size 64: vLLM's CPU attention takes no
head size under 32) instead of the conftest's 32-wide shape.
"""

from __future__ import annotations

import gc
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

pytest.importorskip("vllm", reason="the vllm extra is not installed (make test-vllm runs these tests)")

from plaidpp.config import compose  # noqa: E402
from plaidpp.prompts import spacegroup_prompt, unconditional_prompt  # noqa: E402
from plaidpp.representation import get  # noqa: E402
from plaidpp.sampling.generate import ENGINES, final_rows  # noqa: E402
from plaidpp.sampling.sample import plan_sampling, sample_model  # noqa: E402
from plaidpp.settings.sampling import PromptSet  # noqa: E402
from plaidpp.training.models import build_tiny_model, model_fingerprint  # noqa: E402

from .test_sampling_generate import CRYSTAL  # noqa: E402

SHAPE = ["model.architecture.hidden_size=128", "model.architecture.intermediate_size=256",
         "model.architecture.num_hidden_layers=2", "model.architecture.num_attention_heads=2",
         "model.architecture.num_key_value_heads=2", "model.architecture.max_position_embeddings=512",
         "model.tokenizer_vocab_size=400"]


def _save(model, tokenizer, root: Path) -> Path:
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    (root / "training_data.json").write_text('{"repr": "wyckoff"}')
    return root


@pytest.fixture(scope="module")
def parrot(tmp_path_factory):
    """A model overfit on one crystal (greedy decoding writes it), saved as ``plaidpp sft`` saves one."""
    from plaidpp.training.tokenizer import train_crystal_tokenizer

    tokenizer = train_crystal_tokenizer([unconditional_prompt() + CRYSTAL, spacegroup_prompt(139) + CRYSTAL] * 20,
                                        300)
    model = build_tiny_model(compose("sft", SHAPE).model, tokenizer)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)  # 1e-2 diverges at this width
    # prompt and crystal tokenized apart, as the sampler sees them: a text tokenized whole merges across the
    # boundary, and a model that never saw the sampler's tokens is unsure there (near-ties, which two attention
    # kernels may break differently)
    ids = torch.tensor([tokenizer(unconditional_prompt(), add_special_tokens=False)["input_ids"]
                        + tokenizer(CRYSTAL, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]])
    torch.manual_seed(0)
    for _ in range(150):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return _save(model.eval(), tokenizer, tmp_path_factory.mktemp("parrot")), model, tokenizer


def _cfg(root: Path, *overrides: str):
    return compose("sample", [f"paths.root={root}", "workers=1", "tracking.uri=null", *SHAPE,
                              "sampler.engine=vllm", *overrides])


def _engine(model_dir: Path, cfg):
    from plaidpp.sampling.vllm_engine import load_vllm
    from plaidpp.training.models import load_tokenizer

    tokenizer = load_tokenizer(str(model_dir), cfg.model)
    return load_vllm(model_dir, cfg.model, cfg.sampler.vllm, model_fingerprint(model_dir), tokenizer.eos_token_id), \
        tokenizer


def _release(engine) -> None:
    del engine.llm
    gc.collect()


def test_vllm_agrees_with_the_compact_engine_token_for_token(parrot, tmp_path):
    """A tiny nucleus is greedy decoding, which is deterministic: vLLM must write what the project's KV-cache
    loop writes for the same weights and prompts (left-padded prompts of three lengths)."""
    model_dir, model, tokenizer = parrot
    prompts = [unconditional_prompt(), spacegroup_prompt(139), unconditional_prompt() + "Ca8"]
    reference, n_reference = ENGINES["compact"](model, tokenizer, prompts, 1.0, 1e-6, 150, 0)
    engine, vllm_tokenizer = _engine(model_dir, _cfg(tmp_path))
    texts, n_tokens = ENGINES["vllm"](engine, vllm_tokenizer, prompts, 1.0, 1e-6, 150, 0)
    assert reference[0] == CRYSTAL  # the parrot learnt its crystal
    assert texts == reference and n_tokens == n_reference
    # Sampling at temperature 1.5 with one seed twice gives the same texts; another seed other texts.
    first = ENGINES["vllm"](engine, vllm_tokenizer, prompts * 4, 1.5, 1.0, 20, 7)
    assert first == ENGINES["vllm"](engine, vllm_tokenizer, prompts * 4, 1.5, 1.0, 20, 7)
    assert first[0] != ENGINES["vllm"](engine, vllm_tokenizer, prompts * 4, 1.5, 1.0, 20, 8)[0]
    _release(engine)


def test_vllm_stage_sampling_is_constrained_and_resumes(tmp_path):
    """Through ``sample_model`` (the sample stage's and RLIP's path): an untrained model, whose free texts
    essentially never decode, writes only decodable texts of the requested group under
    ``grammar+spacegroup``; a run killed after some batches resumes without repeating a slot."""
    from plaidpp.training.tokenizer import train_crystal_tokenizer

    tokenizer = train_crystal_tokenizer([unconditional_prompt() + CRYSTAL, spacegroup_prompt(15) + CRYSTAL] * 20, 300)
    model_dir = _save(build_tiny_model(compose("sft", SHAPE).model, tokenizer), tokenizer, tmp_path / "garbage")
    cfg = _cfg(tmp_path, "sampler.constraint=grammar+spacegroup", "sampler.batch_size=6", "sampler.max_attempts=3",
               "sampler.max_atoms=4", "sampler.max_new_tokens=300")  # as the compact engine's test of this
    prompts = PromptSet(n_unconditional=6, n_per_spacegroup=3, spacegroups=[15, 194])
    out = tmp_path / "samples.jsonl"
    plan = plan_sampling(model_dir, prompts, sampler=cfg.sampler, temperature=1.0, repr="wyckoff", seed=2,
                         out_path=out)
    stats, info = sample_model(plan, cfg.model, progress=False)
    assert info["engine"] == "vllm" and stats.n_slots == stats.finals == 12
    rows = final_rows(out)
    assert [r["index"] for r in rows] == list(range(12))
    assert stats.decoded == stats.attempts and stats.constraint_dead_ends == 0
    from plaidpp.evaluation.symmetry import spacegroup_number

    for row in rows:
        if row["spacegroup"] is not None and row["refused"] is None:
            assert spacegroup_number(get("wyckoff").decode(row["text"]))[0] == row["spacegroup"]
    # A kill after the first batch: keep the rows of slots 0-5 only, then run again.
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    out.write_text("".join(json.dumps(r) + "\n" for r in lines if r["index"] < 6))
    again, _ = sample_model(plan, cfg.model, progress=False)
    assert again.n_final_before == 6 and again.finals == 6
    assert [r["index"] for r in final_rows(out)] == list(range(12))


def test_vllm_samples_a_lora_adapter_merged_or_as_a_request(parrot, tmp_path):
    """An adapter directory (as ``plaidpp dpo`` saves one) is sampled merged into its base, once per adapter
    content, or served as a LoRA request; both write the parrot's crystal greedily (a fresh adapter's B
    matrices are zero, so the adapted model is the base)."""
    from plaidpp.training.models import add_lora

    model_dir, model, tokenizer = parrot
    cfg = _cfg(tmp_path)
    adapter = add_lora(build_tiny_model(cfg.model, tokenizer), cfg.model)
    with torch.no_grad():
        for name, weight in adapter.named_parameters():
            if "lora_A" in name:
                weight.normal_()  # A random, B zero: the update B A is still zero
    adapter_dir = tmp_path / "adapter"
    adapter.save_pretrained(adapter_dir)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    (adapter_dir / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(model_dir)}))
    tokenizer.save_pretrained(adapter_dir)
    for mode in ("merge", "request"):
        cfg.sampler.vllm = replace(cfg.sampler.vllm, lora=mode)
        engine, vllm_tokenizer = _engine(adapter_dir, cfg)
        assert (engine.lora_request is not None) == (mode == "request")
        texts, _ = ENGINES["vllm"](engine, vllm_tokenizer, [unconditional_prompt()], 1.0, 1e-6, 150, 0)
        assert texts == [CRYSTAL], mode
        _release(engine)
    merged = list(Path(cfg.sampler.vllm.merged_dir).iterdir())
    assert [p.name for p in merged] == [model_fingerprint(adapter_dir)]
