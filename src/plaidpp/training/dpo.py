"""Direct preference optimisation of the generator on RLIP pairs, with TRL's ``DPOTrainer``.

PLaID++ appendix 7.2: TRL DPO, Adam, batch 16, lr 1e-6, beta 0.1, one epoch, and iterative DPO where the
reference is the previous iteration's model (pi_ref = pi_{i-1}, Algorithm 1). The policy and the reference
are always loaded from *directories*:

- a full model (the tiny Qwen2): policy and reference are two separate instances read from ``policy_path``
  and ``ref_path``, and the reference is passed to ``DPOTrainer`` explicitly. (Letting TRL build the
  reference itself re-reads ``config._name_or_path``, which is wrong or empty for a model built from a config.)
- a LoRA adapter (the 7B QLoRA): when ``ref_path == policy_path`` TRL copies the loaded adapter into a frozen
  "ref" adapter, which *is* pi_{i-1}; with a different ``ref_path`` (the fixed pi_0 ablation) that model is
  loaded separately and passed in. The "ref" adapter is deleted before saving so the output is one adapter.

TRL 1.16 traps handled here: ``DPOConfig`` defaults to bf16 and gradient checkpointing, both wrong on a CPU
(set from the model config and the device), and to 3 epochs (the paper uses one).

The output directory is written whole or not at all (temp directory + rename); a kill mid-training resumes
from the last checkpoint in ``<out>.ckpt/`` on the next call. Under ``accelerate launch`` (N processes) the
trainer splits the pairs and the main process alone writes (``distributed.py``).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from plaidpp.errors import UserError
from plaidpp.io import replace_dir, write_metrics
from plaidpp.settings.model import DPOSettings, ModelSettings
from plaidpp.settings.stages import DpoStageConfig
from plaidpp.training import distributed
from plaidpp.training.models import WEIGHT_SUFFIXES, bf16_enabled

SUMMARY_FILE = "dpo_summary.json"


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def load_pairs_dataset(pairs_path: str | Path):
    """The pairs JSONL as a ``datasets.Dataset`` with the prompt/chosen/rejected columns TRL reads."""
    from datasets import Dataset

    rows = []
    with Path(pairs_path).open() as handle:
        for line in handle:
            if line.strip():
                pair = json.loads(line)
                rows.append({"prompt": pair["prompt"], "chosen": pair["chosen"], "rejected": pair["rejected"]})
    return Dataset.from_list(rows) if rows else None


def dpo_args(dpo: DPOSettings, output_dir: Path, seed: int, model_cfg: ModelSettings, n_pairs: int):
    """A ``DPOConfig`` from the DPO settings; precision and checkpointing only where the device has them."""
    from trl import DPOConfig

    cuda = torch.cuda.is_available()
    distributed.state()  # the launcher's processes, kept by the trainer (use_configured_state) instead of rebuilt
    steps_per_epoch = math.ceil(n_pairs / (dpo.batch_size * dpo.grad_accum))
    return DPOConfig(
        output_dir=str(output_dir),
        beta=dpo.beta,
        loss_type=[dpo.loss_type],
        learning_rate=dpo.lr,
        lr_scheduler_type=dpo.lr_scheduler,
        warmup_steps=dpo.warmup_steps,
        num_train_epochs=dpo.epochs,
        max_steps=dpo.max_steps,
        per_device_train_batch_size=dpo.batch_size,
        gradient_accumulation_steps=dpo.grad_accum,
        max_length=dpo.max_length,
        optim=dpo.optim,
        weight_decay=dpo.weight_decay,
        max_grad_norm=dpo.max_grad_norm,
        bf16=bf16_enabled(dpo.bf16),  # TRL defaults to bf16 everywhere, which fails on a CPU
        fp16=False,
        gradient_checkpointing=model_cfg.gradient_checkpointing and cuda,  # TRL's default is on
        use_cpu=not cuda,
        logging_steps=max(1, min(dpo.logging_steps, steps_per_epoch)),
        save_strategy="steps",
        save_steps=dpo.save_steps,
        save_total_limit=1,
        report_to="none",
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        disable_tqdm=False,
        accelerator_config={"use_configured_state": True},
    )


def build_trainer(policy_path: str | Path, ref_path: str | Path, dataset, args, model_cfg: ModelSettings):
    """The ``DPOTrainer`` for one iteration: policy from ``policy_path``, reference from ``ref_path``."""
    from peft import PeftModel
    from trl import DPOTrainer

    from plaidpp.training.models import is_adapter_dir, load_model_and_tokenizer

    policy, tokenizer = load_model_and_tokenizer(str(policy_path), model_cfg, for_training=True)
    same = Path(policy_path).resolve() == Path(ref_path).resolve()
    ref_model = None
    if not (same and isinstance(policy, PeftModel) and is_adapter_dir(policy_path)):
        # full model, or a different reference: an independent frozen copy read from disk
        ref_model, _ = load_model_and_tokenizer(str(ref_path), model_cfg, for_training=False)
    tokenizer.padding_side = "right"  # TRL pads itself; left padding is only for generation
    return DPOTrainer(model=policy, ref_model=ref_model, args=args, train_dataset=dataset, processing_class=tokenizer)


def _log_history_summary(history: list[dict[str, float]]) -> dict[str, float]:
    """First/last logged loss and final reward margin & accuracy (TRL logs ``rewards/margins`` etc.)."""
    steps = [h for h in history if "loss" in h]
    out: dict[str, float] = {}
    if steps:
        out["dpo/loss_first"] = float(steps[0]["loss"])
        out["dpo/loss_last"] = float(steps[-1]["loss"])
        for key in ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected"):
            values = [h[key] for h in steps if key in h]
            if values:
                out[f"dpo/{key.split('/')[1]}_last"] = float(values[-1])
                out[f"dpo/{key.split('/')[1]}_mean"] = float(sum(values) / len(values))
    final = [h for h in history if "train_loss" in h]
    if final:
        out["dpo/train_loss"] = float(final[-1]["train_loss"])
        out["dpo/train_runtime_s"] = float(final[-1].get("train_runtime", float("nan")))
    return out


def copy_metadata(src: Path, dst: Path) -> None:
    """Carry SFT side files (e.g. training_data.json) forward; never weights or files the save just wrote."""
    for item in src.iterdir():
        if item.is_file() and not item.name.endswith(WEIGHT_SUFFIXES) and not (dst / item.name).exists():
            shutil.copy2(item, dst / item.name)


def _save(trainer, tokenizer, tmp: Path) -> None:
    """Every process calls it (the trainer saves from the main one, gathering FSDP shards first)."""
    from peft import PeftModel

    model = trainer.accelerator.unwrap_model(trainer.model)
    if isinstance(model, PeftModel) and "ref" in model.peft_config:
        model.delete_adapter("ref")  # TRL's frozen copy of pi_{i-1}; the next iteration rebuilds it
    trainer.save_model(str(tmp))
    if distributed.is_main():
        tokenizer.padding_side = "left"
        tokenizer.save_pretrained(str(tmp))


def train_dpo(policy_path: str | Path, ref_path: str | Path, pairs_path: str | Path, out_path: str | Path,
              model_cfg: ModelSettings, dpo: DPOSettings, seed: int) -> dict[str, Any]:
    """One round of DPO: ``policy_path`` -> ``out_path`` on ``pairs_path`` against ``ref_path``.

    Returns (and stores in ``<out>/dpo_summary.json``) the pair count, loss and reward-margin figures.
    An existing ``<out>/dpo_summary.json`` means done: it is returned without training again.
    """
    policy_path, ref_path, pairs_path, out_path = map(Path, (policy_path, ref_path, pairs_path, out_path))
    if (out_path / SUMMARY_FILE).is_file():
        return json.loads((out_path / SUMMARY_FILE).read_text())
    for p, what in ((policy_path, "policy model"), (ref_path, "reference model"), (pairs_path, "pairs file")):
        if not p.exists():
            raise UserError(f"no {what} at {p}")
    dataset = load_pairs_dataset(pairs_path)
    n_pairs = 0 if dataset is None else len(dataset)
    summary: dict[str, Any] = {
        "policy": str(policy_path), "reference": str(ref_path), "pairs": str(pairs_path),
        "pairs_sha256": _file_hash(pairs_path), "n_pairs": n_pairs, "dpo": asdict(dpo), "seed": seed,
    }
    tmp = out_path.with_name(out_path.name + ".tmp")
    main = distributed.is_main()
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    distributed.barrier()
    if n_pairs == 0:
        if main:  # nothing to prefer (e.g. no stable or metastable sample): the policy carries over unchanged
            shutil.copytree(policy_path, tmp)
        summary["skipped"] = "no pairs"
    else:
        ckpt = out_path.with_name(out_path.name + ".ckpt")
        args = dpo_args(dpo, ckpt, seed, model_cfg, n_pairs)
        trainer = build_trainer(policy_path, ref_path, dataset, args, model_cfg)
        resume = ckpt.is_dir() and any(ckpt.glob("checkpoint-*"))
        start = time.perf_counter()
        trainer.train(resume_from_checkpoint=True if resume else None)
        summary["wall_s"] = round(time.perf_counter() - start, 2)
        summary["resumed"] = bool(resume)
        summary.update(_log_history_summary(trainer.state.log_history))
        summary["log_history"] = trainer.state.log_history
        if dpo.eval_after:
            # the logged figures are taken before each step's update (with one or two steps they say nothing);
            # this is the trained policy against the reference on the same pairs: how far the round moved it
            after = trainer.evaluate(eval_dataset=trainer.train_dataset)
            summary.update({f"dpo/after_{k.removeprefix('eval_').replace('rewards/', '')}": float(v)
                            for k, v in after.items() if k.startswith(("eval_loss", "eval_rewards/"))})
        _save(trainer, trainer.processing_class, tmp)
        del trainer
    if not main:  # the main process writes the summary and renames; the others wait for it
        distributed.barrier()
        return summary
    copy_metadata(policy_path, tmp)
    (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    replace_dir(tmp, out_path)
    shutil.rmtree(out_path.with_name(out_path.name + ".ckpt"), ignore_errors=True)
    distributed.barrier()
    return summary


def dpo_stage(cfg: DpoStageConfig) -> dict[str, Any]:
    """``plaidpp dpo policy=<dir> ref=<dir> pairs_file=<pairs.jsonl> out=<dir>``; ref defaults to the policy."""
    from plaidpp.tracking import log_summary

    ref = cfg.ref or cfg.policy
    summary = train_dpo(cfg.policy, ref, cfg.pairs_file, cfg.out, cfg.model, cfg.dpo, cfg.seed)
    if not distributed.is_main():
        return summary
    metrics = {k: v for k, v in summary.items() if k.startswith("dpo/")}
    metrics["dpo/n_pairs"] = summary["n_pairs"]
    log_summary(cfg, "dpo", {"dpo": summary["dpo"], "policy": cfg.policy, "ref": ref}, metrics)
    if cfg.metrics_file:
        write_metrics(cfg.metrics_file, {"n_pairs": summary["n_pairs"], **metrics})
    print(json.dumps({"n_pairs": summary["n_pairs"], **metrics}))
    return summary
