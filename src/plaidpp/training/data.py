"""SFT training rows and examples: crystal text + properties -> (prompt, completion) token ids.

Rows come from the ``prepare`` stage (``data/processed/{repr}/{split}.jsonl``). When that output is missing
(a fresh checkout that has not run ``prepare``), the same rows are built here from the vendored MP-20 CSV
with ``representation.get(repr).encode`` and cached under ``paths.cache`` so a second run is instant.

Each epoch re-draws the task of every row (paper, appendix 7.2: infill one third of the time, otherwise
generation, unconditional or conditioned on one to five properties), so ten epochs see ten prompt variants
of a crystal rather than one repeated ten times. The draw depends only on (seed, epoch, row), which keeps a
resumed run on exactly the examples it would have seen.
"""

from __future__ import annotations

import json
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from plaidpp.errors import UserError
from plaidpp.io import write_text
from plaidpp.prompts import build_example
from plaidpp.settings.model import TaskMixSettings
from plaidpp.settings.stages import SftConfig


def processed_path(cfg: SftConfig, repr_name: str, split: str) -> Path:
    return Path(cfg.rows_dir) / repr_name / f"{split}.jsonl"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _encode_split(cfg: SftConfig, repr_name: str, split: str) -> list[dict[str, Any]]:
    """Fallback when ``prepare`` has not run: encode the vendored CSV rows, caching the result."""
    from pymatgen.core import Structure

    from plaidpp.data.mp20 import load_rows, row_properties
    from plaidpp.representation import get

    cache = Path(cfg.paths.cache) / "sft_rows" / repr_name / f"{split}.jsonl"
    if cache.exists():
        return _read_jsonl(cache)
    representation = get(repr_name)
    frame = load_rows(cfg.data, split)
    rows, failures = [], 0
    for _, row in tqdm(frame.iterrows(), total=len(frame), desc=f"encode {split} ({repr_name})"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pymatgen's CIF rounding notices, one per row
                text = representation.encode(Structure.from_str(row["cif"], fmt="cif"))
        except Exception as exc:  # counted below; prepare reports the same failures in detail
            failures += 1
            print(f"skip {row['material_id']}: {type(exc).__name__}: {exc}")
            continue
        rows.append({"material_id": row["material_id"], "split": split, "repr": repr_name, "text": text,
                     "properties": row_properties(row)})
    print(f"encoded {len(rows)} {split} rows as {repr_name} ({failures} failed)")
    write_text(cache, "".join(json.dumps(r) + "\n" for r in rows))
    return rows


def load_training_rows(cfg: SftConfig, repr_name: str, splits: list[str]) -> tuple[list[dict], dict[str, str]]:
    """Rows of the given splits and, per split, where they came from (for the model's training record)."""
    rows, sources = [], {}
    for split in splits:
        path = processed_path(cfg, repr_name, split)
        if path.exists():
            split_rows = _read_jsonl(path)
            sources[split] = str(path)
        else:
            split_rows = _encode_split(cfg, repr_name, split)
            sources[split] = f"encoded from {cfg.data.file} (prepare output {path} missing)"
        if cfg.data.max_rows_per_split is not None:
            split_rows = split_rows[: cfg.data.max_rows_per_split]
        if not split_rows:
            raise UserError(f"no {repr_name} rows for split {split!r}")
        rows.extend(split_rows)
    return rows, sources


@dataclass
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]  # -100 on prompt tokens: the loss is on the crystal text (and infill answer) only


def tokenize_example(tokenizer, prompt: str, completion: str, max_length: int) -> TokenizedExample:
    """Prompt ids + completion ids + EOS; truncation keeps the prompt and cuts the completion's end."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if tokenizer.bos_token_id is not None and getattr(tokenizer, "add_bos_token", False):
        prompt_ids = [tokenizer.bos_token_id] + prompt_ids
    ids = (prompt_ids + completion_ids)[:max_length]
    labels = ([-100] * len(prompt_ids) + completion_ids)[:max_length]
    return TokenizedExample(ids, labels)


class SFTDataset(torch.utils.data.Dataset):
    """``epochs`` passes over ``rows``, item ``e * len(rows) + i`` = row i with the task drawn for epoch e.

    ``epochs`` may be fractional (1.6 = every row once, then 60 % of rows again), which sizes training to a
    wall-time budget without changing the schedule's shape.

    Examples are tokenized lazily (a tokenizer call is ~50 µs, far below a training step).
    """

    def __init__(self, rows: list[dict], tokenizer, epochs: float, seed: int, max_length: int,
                 mix: TaskMixSettings) -> None:
        self.rows, self.tokenizer, self.epochs = rows, tokenizer, float(epochs)
        self.seed, self.max_length, self.mix = int(seed), int(max_length), mix

    def __len__(self) -> int:
        return round(len(self.rows) * self.epochs)

    def example(self, index: int):
        if not 0 <= index < len(self):  # an index past the end would wrap into another epoch: iterating the
            raise IndexError(index)   # dataset (transformers' length grouping does) would never end
        epoch, i = divmod(index, len(self.rows))
        row = self.rows[i]
        rng = random.Random(f"{self.seed}-{epoch}-{i}")
        return build_example(row["text"], row.get("properties") or {}, rng, self.mix)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        example = self.example(index)
        tokenized = tokenize_example(self.tokenizer, example.prompt, example.completion, self.max_length)
        return {"input_ids": tokenized.input_ids, "labels": tokenized.labels}


class PadCollator:
    """Right-pads a batch to its longest example (labels with -100, attention mask 0 on padding)."""

    def __init__(self, pad_token_id: int, multiple_of: int = 8) -> None:
        self.pad_token_id, self.multiple_of = pad_token_id, multiple_of

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        longest = max(len(item["input_ids"]) for item in batch)
        longest = -(-longest // self.multiple_of) * self.multiple_of
        ids = torch.full((len(batch), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), longest), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, item in enumerate(batch):
            n = len(item["input_ids"])
            ids[row, :n] = torch.tensor(item["input_ids"])
            labels[row, :n] = torch.tensor(item["labels"])
            mask[row, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}
