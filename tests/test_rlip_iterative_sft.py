"""Iterative-SFT baseline: which samples are kept (hand-labelled), and that one round trains the policy."""

from __future__ import annotations

import math

import pandas as pd
import torch
from safetensors.torch import load_file

from plaidpp.prompts import spacegroup_prompt, unconditional_prompt
from plaidpp.rlip.iterative_sft import accepted_examples, train_on_accepted
from plaidpp.training.models import build_tiny_model
from plaidpp.training.tokenizer import train_crystal_tokenizer

U, G = unconditional_prompt(), spacegroup_prompt(225)
NACL = ("Na4Cl4\nSpacegroup: Fm-3m\nabc: 5.69 5.69 5.69\nangles: 90.00 90.00 90.00\nSites (8)\n"
        "Na 0.000 0.000 0.000 4a\nCl 0.500 0.500 0.500 4b")


def _table():
    """a stable, b metastable at the 0.08 edge, c unstable, d unparsed, e invalid: keep a and b only."""
    return pd.DataFrame({
        "index": range(5), "text": [NACL, NACL + " ", "c", "d", "e"], "prompt": [U, G, U, U, U],
        "e_hull": [-0.01, 0.08, 0.09, math.nan, -0.5], "parse_ok": [True, True, True, False, True],
        "valid_structure": [True, True, True, False, False], "relax_ok": [True, True, True, False, True],
    })


def test_accepted_examples_are_the_metastable_samples_with_their_prompts(make_config):
    assert accepted_examples(_table(), make_config("rlip").pairs) == [(U, NACL), (G, NACL + " ")]  # tiers 0 / 0.08
    strict = make_config("rlip", "pairs.metastable_max=0.0").pairs
    assert accepted_examples(_table(), strict) == [(U, NACL)]


def test_one_round_changes_the_policy(tmp_path, make_config):
    tokenizer = train_crystal_tokenizer([NACL, U, G], vocab_size=280)
    cfg = make_config("rlip", "iterative_sft.lr=1e-3", "iterative_sft.batch_size=2")
    build_tiny_model(cfg.model, tokenizer).save_pretrained(tmp_path / "pi0")
    tokenizer.save_pretrained(tmp_path / "pi0")
    _table().to_parquet(tmp_path / "structures.parquet")
    summary = train_on_accepted(tmp_path / "pi0", tmp_path / "structures.parquet", tmp_path / "pi1", cfg, seed=0)
    assert summary["n_examples"] == 2 and math.isfinite(summary["sft/train_loss"])
    before, after = load_file(tmp_path / "pi0" / "model.safetensors"), load_file(tmp_path / "pi1" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
