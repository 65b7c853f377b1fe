"""The qwen2.5-7b path (pretrained base, 4-bit NF4, LoRA) on a tiny randomly initialised Qwen2 stand-in.

The stand-in is saved to a temp directory with the real (vendored) Qwen2.5 tokenizer and goes through
exactly what `plaidpp sft model=qwen2.5-7b model.pretrained=DIR` and `plaidpp sample` do; only the sizes,
the step count and the float dtype (CPU) differ from the paper's run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from plaidpp.config import compose
from plaidpp.prompts import spacegroup_prompt, unconditional_prompt
from plaidpp.sampling.generate import final_rows, generate
from plaidpp.settings.sampling import SamplerSettings

from .conftest import shrunk_overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from plaidpp.data.tokenizer import load_qwen_tokenizer

    directory = tmp_path_factory.mktemp("qwen-stand-in")
    tokenizer = load_qwen_tokenizer()
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=False, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


def overrides(tmp_path: Path, stand_in: Path, quantized: bool) -> list[str]:
    extra = ["model.quantization.bnb_4bit_compute_dtype=float32"] if quantized else ["model.quantization.load_in_4bit=false"]
    return shrunk_overrides("sft", tmp_path, [
        "model=qwen2.5-7b", f"model.pretrained={stand_in}", "model.dtype=float32", *extra,
        "data.max_rows_per_split=8", "train.max_steps=3", "train.batch_size=2", "train.grad_accum=2",
        "train.lr=1e-3", "train.max_length=256",
    ])


@pytest.mark.parametrize("quantized", [True, False], ids=["nf4-lora", "lora"])
def test_qwen_path_trains_an_adapter_and_samples_from_it(stand_in, tmp_path, quantized):
    from plaidpp.training.models import load_model_and_tokenizer
    from plaidpp.training.sft import sft

    cfg = compose("sft", overrides(tmp_path, stand_in, quantized))
    assert cfg.train.lr == 1e-3 and compose("sft", ["model=qwen2.5-7b"]).train.lr == 1e-5  # paper's lr by default
    assert cfg.model.lora.r == 8 and cfg.model.lora.alpha == 32 and cfg.model.lora.dropout == 0.05
    summary = sft(cfg)
    out = Path(cfg.out_dir)
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(stand_in) and adapter["r"] == 8
    assert not (out / "model.safetensors").exists()  # only the adapter is saved, not the base
    assert 0 < summary["trainable_parameters"] < summary["parameters"] / 10
    assert summary["steps"] == 3

    # Sampling reloads base (+4-bit) + adapter, as `plaidpp sample model=qwen2.5-7b` does.
    model, tokenizer = load_model_and_tokenizer(str(out), cfg.model, for_training=False)
    assert getattr(model.base_model.model, "is_loaded_in_4bit", False) == quantized
    assert len(tokenizer) == len(load_model_and_tokenizer.__globals__["load_tokenizer"](str(stand_in)))
    # Under the constraint with Qwen's tokenizer: 12 tokens cannot finish a crystal, but every one is allowed
    # (the text so far is a prefix the automaton accepts) and the prompted group is written.
    sampler = SamplerSettings(constraint="grammar+spacegroup", batch_size=4, max_attempts=2, max_new_tokens=12)
    stats = generate(model, tokenizer, [unconditional_prompt(), spacegroup_prompt(216)], n=2, sampler=sampler,
                     temperature=1.0, repr="wyckoff", out_path=tmp_path / "s.jsonl", seed=0, model_id="stand-in",
                     progress=False)
    assert stats.finals == 4 and stats.constraint_dead_ends == 0
    from plaidpp.constraint.automaton import Rules, WyckoffState

    for row in final_rows(tmp_path / "s.jsonl"):
        state = WyckoffState(Rules.of(sampler), requested=row["spacegroup"])
        assert state.feed(row["text"]) is not None, row["text"]

    # Reloading for training (what DPO does) gives trainable LoRA weights that take a gradient step.
    model, tokenizer = load_model_and_tokenizer(str(out), cfg.model, for_training=True)
    trainable = [p for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    ids = tokenizer(unconditional_prompt() + "Ca4O4", return_tensors="pt")["input_ids"]
    model(input_ids=ids, labels=ids).loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)
