"""DPO rounds on a tiny real Qwen2: the step changes the policy, and the reference is handed over right.

The check on the reference uses a derived value: at the first step of a round the policy equals the
reference exactly when pi_ref = pi_{i-1}, so the first DPO loss is -log sigmoid(0) = log 2. With any other
reference (pi_0 after pi_0 was trained on) the log-ratios differ and the loss is not log 2.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from plaidpp.prompts import spacegroup_prompt, unconditional_prompt
from plaidpp.training.dpo import build_trainer, dpo_args, load_pairs_dataset, train_dpo
from plaidpp.training.models import build_tiny_model
from plaidpp.training.tokenizer import train_crystal_tokenizer

LOG2 = math.log(2.0)
CRYSTALS = [  # Wyckoff texts in the paper's format (its Table 3)
    "Ho4Al4Ni4\nSpacegroup: Pnma\nabc: 6.91 4.32 7.44\nangles: 90.00 90.00 90.00\nSites (12)\n"
    "Ho 0.005 0.250 0.195 4c\nAl 0.190 0.250 0.590 4c\nNi 0.789 0.250 0.591 4c",
    "Ti4Ni4Sn4\nSpacegroup: F-43m\nabc: 5.89 5.89 5.89\nangles: 90.00 90.00 90.00\nSites (12)\n"
    "Ti 0.500 0.500 0.500 4b\nNi 0.750 0.750 0.750 4d\nSn 0.000 0.000 0.000 4a",
    "Mn8O12F4\nSpacegroup: C2/c\nabc: 9.55 4.98 6.95\nangles: 90.00 96.49 90.00\nSites (24)\n"
    "Mn 0.826 0.495 0.074 8f\nO 0.832 0.906 0.599 8f\nO 0.000 0.489 0.250 4e\nF 0.000 0.000 0.000 4a",
    "Na4Cl4\nSpacegroup: Fm-3m\nabc: 5.69 5.69 5.69\nangles: 90.00 90.00 90.00\nSites (8)\n"
    "Na 0.000 0.000 0.000 4a\nCl 0.500 0.500 0.500 4b",
]
# two layers (the shared tiny shape has one), so the LoRA test below has something to adapt
DPO_OVERRIDES = ["policy=unused", "pairs_file=unused", "out=unused", "dpo.lr=1e-3", "dpo.batch_size=2",
                 "dpo.logging_steps=1", "dpo.max_length=256", "model.architecture.num_hidden_layers=2",
                 "model.architecture.max_position_embeddings=256"]


def _cfg(root, extra=()):
    from plaidpp.config import compose

    from .conftest import shrunk_overrides

    return compose("dpo", shrunk_overrides("dpo", root, [*DPO_OVERRIDES, *extra]))


def _train(cfg, policy, ref, pairs, out):
    return train_dpo(policy, ref, pairs, out, cfg.model, cfg.dpo, cfg.seed)


@pytest.fixture(scope="module")
def pi0(tmp_path_factory):
    """pi_0: a randomly initialised tiny Qwen2 with a crystal BPE, saved and reloaded from a directory."""
    root = tmp_path_factory.mktemp("dpo")
    prompts = [unconditional_prompt(), spacegroup_prompt(15), spacegroup_prompt(225)]
    tokenizer = train_crystal_tokenizer(CRYSTALS + prompts, vocab_size=300)
    cfg = _cfg(root)
    model = build_tiny_model(cfg.model, tokenizer)
    model.save_pretrained(root / "pi0")
    tokenizer.save_pretrained(root / "pi0")
    pairs = root / "pairs.jsonl"
    with pairs.open("w") as handle:
        for prompt in prompts:
            for chosen, rejected in ((0, 1), (2, 3)):
                handle.write(json.dumps({"prompt": prompt, "chosen": CRYSTALS[chosen],
                                         "rejected": CRYSTALS[rejected], "kind": "test"}) + "\n")
    return root


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def _first_loss(summary):
    return [h["loss"] for h in summary["log_history"] if "loss" in h][0]


def test_dpo_round_changes_the_policy_and_starts_at_log2(pi0, tmp_path):
    cfg = _cfg(tmp_path)
    summary = _train(cfg, pi0 / "pi0", pi0 / "pi0", pi0 / "pairs.jsonl", pi0 / "pi1")
    assert summary["n_pairs"] == 6
    assert _first_loss(summary) == pytest.approx(LOG2, abs=1e-4)
    before, after = _weights(pi0 / "pi0"), _weights(pi0 / "pi1")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert summary["dpo/loss_last"] < LOG2  # three steps at lr 1e-3 on six pairs push the margin up
    assert summary["dpo/after_margins"] > 0 and summary["dpo/after_loss"] < LOG2  # trained policy vs pi_0
    assert (pi0 / "pi1" / "tokenizer.json").is_file() and not (pi0 / "pi1.ckpt").exists()
    # done means done: a second call returns the stored summary and leaves the weights alone
    again = _train(cfg, pi0 / "pi0", pi0 / "pi0", pi0 / "pairs.jsonl", pi0 / "pi1")
    assert again["pairs_sha256"] == summary["pairs_sha256"]
    assert all(torch.equal(after[k], _weights(pi0 / "pi1")[k]) for k in after)


def test_next_round_reference_is_the_previous_policy_not_pi0(pi0, tmp_path):
    cfg = _cfg(tmp_path)
    _train(cfg, pi0 / "pi0", pi0 / "pi0", pi0 / "pairs.jsonl", pi0 / "pi1")  # no-op when the test above ran
    dataset = load_pairs_dataset(pi0 / "pairs.jsonl")
    saved1 = _weights(pi0 / "pi1")
    for ref_dir, expect_log2 in (("pi1", True), ("pi0", False)):
        args = dpo_args(cfg.dpo, tmp_path / f"ckpt_{ref_dir}", 0, cfg.model, len(dataset))
        trainer = build_trainer(pi0 / "pi1", pi0 / ref_dir, dataset, args, cfg.model)
        ref_state = trainer.ref_model.state_dict()
        expected = _weights(pi0 / ref_dir)
        assert all(torch.equal(ref_state[k], expected[k]) for k in expected)
        trainer.train()
        first = [h["loss"] for h in trainer.state.log_history if "loss" in h][0]
        assert (abs(first - LOG2) < 1e-4) is expect_log2
        # the reference is frozen: still the saved weights after training
        assert all(torch.equal(trainer.ref_model.state_dict()[k], expected[k]) for k in expected)
    assert all(torch.equal(saved1[k], _weights(pi0 / "pi1")[k]) for k in saved1)


def test_lora_adapter_reference_is_the_loaded_adapter(pi0, tmp_path):
    """A LoRA policy (the 7B path): with ref == policy TRL's frozen 'ref' adapter copy is pi_{i-1}.

    The adapter's B matrices are perturbed so the adapter differs from the base: if the reference were the
    base model (adapters disabled) the first loss would not be log 2."""
    import dataclasses

    from peft import PeftModel

    from plaidpp.training.models import add_lora, load_model_and_tokenizer

    lora = ["model.lora.enabled=true", "model.lora.r=2", "model.lora.alpha=4", "model.lora.dropout=0.0",
            "model.lora.target_modules=[q_proj,v_proj]"]
    cfg = _cfg(tmp_path, lora)

    no_lora = dataclasses.replace(cfg.model, lora=dataclasses.replace(cfg.model.lora, enabled=False))
    model, tokenizer = load_model_and_tokenizer(str(pi0 / "pi0"), no_lora, False)
    peft_model = add_lora(model, cfg.model)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft_model.save_pretrained(tmp_path / "adapter0")
    tokenizer.save_pretrained(tmp_path / "adapter0")
    summary = _train(cfg, tmp_path / "adapter0", tmp_path / "adapter0", pi0 / "pairs.jsonl", tmp_path / "adapter1")
    assert _first_loss(summary) == pytest.approx(LOG2, abs=1e-4)
    assert (tmp_path / "adapter1" / "adapter_config.json").is_file()
    assert not (tmp_path / "adapter1" / "ref").exists()  # TRL's ref copy is not saved
    reloaded, _ = load_model_and_tokenizer(str(tmp_path / "adapter1"), cfg.model, for_training=False)
    assert isinstance(reloaded, PeftModel)
