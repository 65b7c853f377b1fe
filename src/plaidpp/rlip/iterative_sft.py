"""Iterative-SFT baseline (PLaID++ appendix 7.2): rejection sampling instead of preference learning.

Each round fine-tunes pi_{i-1} on its own accepted samples only (reward-MLIP E_hull <= pairs.metastable_max,
0.08 eV/atom, i.e. stable or metastable, text that parsed into a valid structure), each with the prompt it answered, using the
same iterations, learning rate and sample size as DPO. Examples are tokenized exactly like SFT
(``plaidpp.training.data.tokenize_example``: loss on the crystal text only) and trained with the same
Hugging Face ``Trainer``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from plaidpp.io import replace_dir
from plaidpp.rlip.pairs import tier_of
from plaidpp.settings.rlip import PairsSettings
from plaidpp.settings.stages import RlipConfig


def accepted_examples(table: pd.DataFrame, tiers: PairsSettings) -> list[tuple[str, str]]:
    """(prompt, text) of every usable sample in the reward tiers stable or metastable, in table order."""
    return [(row["prompt"], row["text"]) for _, row in table.iterrows()
            if tier_of(row, tiers) in ("stable", "metastable")]


def train_on_accepted(policy_path: Path, scored: Path, out_path: Path, cfg: RlipConfig, seed: int) -> dict[str, Any]:
    """One rejection-sampling round: ``policy_path`` fine-tuned on the accepted rows of ``scored``."""
    from transformers import Trainer, TrainingArguments

    from plaidpp.training.data import PadCollator, tokenize_example
    from plaidpp.training.dpo import copy_metadata
    from plaidpp.training.models import bf16_enabled, load_model_and_tokenizer

    s = cfg.iterative_sft
    examples = accepted_examples(pd.read_parquet(scored), cfg.pairs)
    summary: dict[str, Any] = {"n_examples": len(examples), "policy": str(policy_path),
                               "e_hull_max": cfg.pairs.metastable_max}
    tmp = out_path.with_name(out_path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if not examples:
        shutil.copytree(policy_path, tmp)
        summary["skipped"] = "no accepted samples"
    else:
        model, tokenizer = load_model_and_tokenizer(str(policy_path), cfg.model, for_training=True)
        data = [tokenize_example(tokenizer, p, t, s.max_length) for p, t in examples]
        dataset = [{"input_ids": d.input_ids, "labels": d.labels} for d in data]
        args = TrainingArguments(
            output_dir=str(out_path.with_name(out_path.name + ".ckpt")), num_train_epochs=s.epochs,
            per_device_train_batch_size=s.batch_size, learning_rate=s.lr, lr_scheduler_type="constant",
            seed=seed, data_seed=seed, report_to="none", remove_unused_columns=False, save_strategy="no",
            logging_steps=1, bf16=bf16_enabled(cfg.dpo.bf16), use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0, disable_tqdm=False,
        )
        trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=PadCollator(tokenizer.pad_token_id))
        started = time.perf_counter()
        result = trainer.train()
        summary.update({"sft/train_loss": float(result.training_loss), "sft/n_examples": len(examples),
                        "wall_s": round(time.perf_counter() - started, 2)})
        trainer.model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    copy_metadata(policy_path, tmp)
    replace_dir(tmp, out_path)
    shutil.rmtree(out_path.with_name(out_path.name + ".ckpt"), ignore_errors=True)
    return summary
