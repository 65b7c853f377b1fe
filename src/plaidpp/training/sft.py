"""``plaidpp sft``: supervised fine-tuning of the crystal generator (paper section 4.1, appendix 7.2).

The loop is the Hugging Face ``Trainer`` (which runs on ``accelerate``: the same command works on a CPU,
one GPU, or several with ``accelerate launch --config_file conf/accelerate/ddp.yaml -m plaidpp.cli sft ...``;
``distributed.py`` keeps the side effects to the main process). Checkpoints go to
``cfg.checkpoint_dir`` every ``train.save_steps`` steps; re-running after a kill resumes from the last one,
provided the configuration is unchanged (a fingerprint file guards that). The finished model (or LoRA
adapter) and tokenizer are written to ``cfg.out_dir`` in Hugging Face format together with
``training_data.json``, the exact list of training crystals (for novelty) and ``sft_summary.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from plaidpp.io import replace_dir, write_metrics
from plaidpp.prompts import build_example
from plaidpp.runtime import set_torch_threads
from plaidpp.settings.model import TaskMixSettings
from plaidpp.settings.stages import SftConfig
from plaidpp.training import distributed
from plaidpp.training.data import PadCollator, SFTDataset, load_training_rows
from plaidpp.training.models import (
    add_lora,
    bf16_enabled,
    build_tiny_model,
    count_parameters,
    load_base_model,
    load_tokenizer,
)
from plaidpp.training.tokenizer import train_crystal_tokenizer
from plaidpp.tracking import flat_params, resumable_run


def fingerprint(cfg: SftConfig) -> str:
    """What determines the training trajectory; checkpoints from a different one are not resumed."""
    keys = {"model": asdict(cfg.model), "train": asdict(cfg.train), "repr": cfg.repr, "data": asdict(cfg.data),
            "seed": cfg.seed}
    for key in ("save_steps", "logging_steps", "save_total_limit"):  # when to write, not what is learned
        keys["train"].pop(key)
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


def tokenizer_corpus(rows: list[dict], seed: int, mix: TaskMixSettings) -> list[str]:
    """Texts the tokenizer is trained on: every crystal once, plus one drawn prompt per row."""
    rng = random.Random(seed)
    corpus = [row["text"] for row in rows]
    for row in rows:
        example = build_example(row["text"], row.get("properties") or {}, rng, mix)
        corpus.append(example.prompt + example.completion)
    return corpus


def _prepare_checkpoint_dir(cfg: SftConfig) -> Path:
    ckpt = Path(cfg.checkpoint_dir)
    stamp = fingerprint(cfg)
    stamp_file = ckpt / "fingerprint.txt"
    if ckpt.exists() and (not stamp_file.exists() or stamp_file.read_text().strip() != stamp):
        print(f"sft: discarding checkpoints in {ckpt} (made with a different configuration)")
        shutil.rmtree(ckpt)
    ckpt.mkdir(parents=True, exist_ok=True)
    stamp_file.write_text(stamp)
    return ckpt


def _tokenizer_for(cfg: SftConfig, rows: list[dict], ckpt: Path):
    """The crystal BPE (trained once per checkpoint dir, so a resumed run keeps its ids) or a pretrained one."""
    if cfg.model.source == "scratch":
        saved = ckpt / "tokenizer"
        if (saved / "tokenizer.json").exists():
            return load_tokenizer(str(saved))
        corpus = tokenizer_corpus(rows, cfg.seed, cfg.train.task_mix)
        tokenizer = train_crystal_tokenizer(corpus, cfg.model.tokenizer_vocab_size)
        tokenizer.save_pretrained(str(saved))
        return load_tokenizer(str(saved))
    return load_tokenizer(str(cfg.model.pretrained), cfg.model)


def _model_for(cfg: SftConfig, tokenizer):
    if cfg.model.source == "scratch":
        model = build_tiny_model(cfg.model, tokenizer)
    else:
        model = load_base_model(str(cfg.model.pretrained), cfg.model)
        if cfg.model.gradient_checkpointing and not cfg.model.quantization.load_in_4bit:
            model.gradient_checkpointing_enable()
    return add_lora(model, cfg.model) if cfg.model.lora.enabled else model


def _training_args(cfg: SftConfig, ckpt: Path):
    from transformers import TrainingArguments

    t = cfg.train
    on_gpu = torch.cuda.is_available()
    distributed.state()  # the launcher's processes, kept by the Trainer (use_configured_state) instead of rebuilt
    warmup = float(t.warmup_steps)
    return TrainingArguments(
        output_dir=str(ckpt),
        num_train_epochs=1,  # the dataset already holds `epochs` passes, each with freshly drawn tasks
        max_steps=int(t.max_steps),
        per_device_train_batch_size=int(t.batch_size),
        train_sampling_strategy=str(t.sampling_strategy),
        gradient_accumulation_steps=int(t.grad_accum),
        learning_rate=float(t.lr),
        lr_scheduler_type=str(t.lr_scheduler),
        warmup_steps=warmup if warmup < 1 else int(warmup),
        weight_decay=float(t.weight_decay),
        max_grad_norm=float(t.max_grad_norm),
        optim=str(t.optim),
        bf16=bf16_enabled(t.bf16),
        logging_steps=int(t.logging_steps),
        save_strategy="steps",
        save_steps=int(t.save_steps),
        save_total_limit=int(t.save_total_limit),
        seed=int(cfg.seed),
        data_seed=int(cfg.seed),
        report_to="none",  # MLflow is logged by our callback into the stage's own run
        remove_unused_columns=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=on_gpu,
        include_num_input_tokens_seen="non_padding",
        gradient_checkpointing=cfg.model.gradient_checkpointing and on_gpu,
        disable_tqdm=False,
        accelerator_config={"use_configured_state": True},
    )


def _tracking_callback(mlflow):
    from transformers import TrainerCallback

    class Tracking(TrainerCallback):
        """Loss curve, learning rate and token throughput into the active MLflow run; tokens/s on the bar."""

        def __init__(self) -> None:
            self.last_time: float | None = None
            self.last_tokens = 0
            self.tokens_per_s: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.last_time, self.last_tokens = time.perf_counter(), int(state.num_input_tokens_seen or 0)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = dict(logs or {})
            now, tokens = time.perf_counter(), int(state.num_input_tokens_seen or 0)
            if self.last_time is not None and now > self.last_time and tokens > self.last_tokens:
                rate = (tokens - self.last_tokens) / (now - self.last_time)
                self.tokens_per_s.append(rate)
                logs["tokens_per_s"] = rate
            self.last_time, self.last_tokens = now, tokens
            if mlflow is not None:
                numeric = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and math.isfinite(v)}
                mlflow.log_metrics(numeric, step=int(state.global_step))

    return Tracking()


def _write_training_record(out: Path, cfg: SftConfig, rows: list[dict], sources: dict[str, str]) -> None:
    record = {
        "repr": cfg.repr,
        "splits": list(cfg.train.splits),
        "sources": sources,
        "n_rows": len(rows),
        "material_ids": [row["material_id"] for row in rows],
    }
    (out / "training_data.json").write_text(json.dumps(record))


def sft(cfg: SftConfig) -> dict:
    """Train, save the model + tokenizer to ``cfg.out_dir``, write ``cfg.metrics_file``; returns the summary."""
    from transformers import Trainer
    from transformers.trainer_utils import get_last_checkpoint

    started = time.perf_counter()
    set_torch_threads(cfg.workers)
    splits = list(cfg.train.splits)
    rows, sources = load_training_rows(cfg, cfg.repr, splits)
    with distributed.main_first():  # one process clears the folder and trains the tokenizer; the others read it
        ckpt = _prepare_checkpoint_dir(cfg)
        tokenizer = _tokenizer_for(cfg, rows, ckpt)
    torch.manual_seed(cfg.seed)
    model = _model_for(cfg, tokenizer)
    dataset = SFTDataset(rows, tokenizer, cfg.train.epochs, cfg.seed, cfg.train.max_length, cfg.train.task_mix)
    last = get_last_checkpoint(str(ckpt)) if any(ckpt.glob("checkpoint-*")) else None
    sizes = count_parameters(model)
    print(f"sft: {len(rows)} {cfg.repr} rows from {splits}, {len(dataset)} examples, "
          f"{sizes['parameters']:,} parameters ({sizes['trainable_parameters']:,} trainable)"
          + (f"; resuming from {last}" if last else ""))

    main = distributed.is_main()
    with resumable_run(cfg if main else None, "sft", ckpt / "mlflow_run_id.txt") as mlflow:
        if mlflow is not None and last is None:
            mlflow.log_params({**flat_params({k: getattr(cfg, k) for k in ("model", "train", "repr", "data")}),
                               "seed": cfg.seed, "n_rows": len(rows), "n_examples": len(dataset), **sizes})
        tracking = _tracking_callback(mlflow)
        trainer = Trainer(
            model=model,
            args=_training_args(cfg, ckpt),
            train_dataset=dataset,
            data_collator=PadCollator(tokenizer.pad_token_id),
            callbacks=[tracking],
        )
        train_started = time.perf_counter()
        result = trainer.train(resume_from_checkpoint=last)
        train_seconds = time.perf_counter() - train_started

        out = Path(cfg.out_dir)
        tmp = out.with_name(out.name + ".tmp")
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        distributed.barrier()
        trainer.save_model(str(tmp))  # every process (FSDP gathers the shards); the main one writes
        if not main:
            distributed.barrier()  # the main process writes the rest and renames
            return {}
        tokenizer.save_pretrained(str(tmp))
        _write_training_record(tmp, cfg, rows, sources)
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        summary = {
            "model": cfg.model.name,
            "repr": cfg.repr,
            "splits": splits,
            "n_rows": len(rows),
            "n_examples_seen": int(trainer.state.global_step) * cfg.train.batch_size * cfg.train.grad_accum
            * distributed.world_size(),
            "processes": distributed.world_size(),
            "steps": int(trainer.state.global_step),
            "final_loss": losses[-1] if losses else None,
            "train_loss": float(result.training_loss),
            "tokens_seen": int(trainer.state.num_input_tokens_seen or 0),
            "train_seconds_this_run": round(train_seconds, 1),
            "wall_seconds_this_run": round(time.perf_counter() - started, 1),
            "resumed_from": last,
            "tokens_per_s_mean": (sum(tracking.tokens_per_s) / len(tracking.tokens_per_s)) if tracking.tokens_per_s else None,
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "torch_threads": torch.get_num_threads(),
            **sizes,
        }
        (tmp / "sft_summary.json").write_text(json.dumps(summary, indent=2))
        replace_dir(tmp, out)
        metrics = Path(cfg.metrics_file)
        write_metrics(metrics, summary)
        if mlflow is not None:
            mlflow.log_metrics({k: float(v) for k, v in summary.items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in sizes})
            mlflow.log_artifact(str(metrics))
            if cfg.log_model_artifacts:
                mlflow.log_artifacts(str(out), artifact_path="model")
    if not cfg.keep_checkpoints:
        shutil.rmtree(ckpt, ignore_errors=True)
    distributed.barrier()
    print(f"sft: wrote {out} (final loss {summary['final_loss']}, {summary['train_seconds_this_run']} s training)")
    return summary
