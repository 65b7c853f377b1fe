"""Building and loading the generator: the from-scratch tiny Qwen2, or a pretrained causal LM (+LoRA, 4-bit).

One path serves both ``conf/model/*.yaml`` entries, so the tiny model exercises the code the 7B uses:

- ``source: scratch`` builds a ``Qwen2ForCausalLM`` from ``cfg_model.architecture`` with the crystal BPE
  tokenizer trained on the training rows (see ``tokenizer.py``).
- ``source: pretrained`` loads ``cfg_model.pretrained`` (hub name or local directory) with
  ``AutoModelForCausalLM``, 4-bit NF4 via bitsandbytes when ``cfg_model.quantization`` is set, then wraps it
  in a LoRA adapter (peft) when ``cfg_model.lora`` is set.

A saved SFT result is either a full model directory or a LoRA adapter directory (``adapter_config.json``,
whose ``base_model_name_or_path`` names the base); ``load_model_and_tokenizer`` reads both.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from plaidpp.errors import UserError
from plaidpp.settings.model import ModelSettings


def bf16_enabled(requested: bool) -> bool:
    """bf16 mixed precision only where it exists: a CUDA device that supports it (never on a CPU)."""
    return bool(requested) and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def torch_dtype(name: str | None) -> torch.dtype | None:
    if name in (None, "auto"):
        return None
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def build_tiny_model(cfg_model: ModelSettings, tokenizer):
    """A randomly initialised Qwen2 causal LM sized by ``cfg_model.architecture`` for ``tokenizer``."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    arch = asdict(cfg_model.architecture)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,  # the embedding is a large share of a tiny model; tying halves it
        **arch,
    )
    torch.manual_seed(cfg_model.init_seed)
    return Qwen2ForCausalLM(config)


def quantization_config(cfg_model: ModelSettings):
    """A ``BitsAndBytesConfig`` from ``cfg_model.quantization`` (None = full precision)."""
    if not cfg_model.quantization.load_in_4bit:
        return None
    from transformers import BitsAndBytesConfig

    quant = asdict(cfg_model.quantization)
    quant["bnb_4bit_compute_dtype"] = torch_dtype(quant["bnb_4bit_compute_dtype"])
    return BitsAndBytesConfig(**quant)


def _device_map(quantized: bool):
    # bitsandbytes places weights at load time; under accelerate/DDP each process takes its own GPU.
    if quantized and torch.cuda.is_available():
        return {"": int(os.environ.get("LOCAL_RANK", 0))}
    return None


def load_base_model(name_or_path: str, cfg_model: ModelSettings):
    """A pretrained causal LM, quantized when configured (no adapter)."""
    from transformers import AutoModelForCausalLM

    quant = quantization_config(cfg_model)
    kwargs: dict[str, Any] = {"dtype": torch_dtype(cfg_model.dtype)}
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = _device_map(True)
    if cfg_model.attn_implementation:
        kwargs["attn_implementation"] = cfg_model.attn_implementation
    try:
        return AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
    except OSError as exc:
        raise UserError(f"cannot load model {name_or_path!r} (no local dir and offline?): {exc}") from None


def add_lora(model, cfg_model: ModelSettings):
    """Wrap ``model`` in a trainable LoRA adapter per ``cfg_model.lora`` (k-bit preparation when quantized)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    lora = cfg_model.lora
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=cfg_model.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


GENERIC_TOKENIZER_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def _read_tokenizer(directory: str):
    """A tokenizer directory, honouring a generic ``tokenizer_class``.

    ``AutoTokenizer`` maps a ``qwen2`` model directory to ``Qwen2Tokenizer``, which rebuilds Qwen's own
    pre-tokenizer and silently ignores the crystal BPE's (numbers come out digit by digit). A directory
    whose tokenizer_config.json names a generic class is therefore loaded with that class directly.
    """
    import json

    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    config_file = Path(directory) / "tokenizer_config.json"
    if config_file.is_file():
        declared = json.loads(config_file.read_text()).get("tokenizer_class")
        if declared in GENERIC_TOKENIZER_CLASSES:
            return PreTrainedTokenizerFast.from_pretrained(directory)
    return AutoTokenizer.from_pretrained(directory)


def load_tokenizer(path_or_name: str, cfg_model: ModelSettings | None = None):
    """The tokenizer saved beside a model; else ``cfg_model.tokenizer`` (``qwen2.5`` = the vendored files).

    Use this rather than ``AutoTokenizer`` for the tiny model's directory (see ``_read_tokenizer``).
    """
    candidates = [str(path_or_name)]
    fallback = cfg_model.tokenizer if cfg_model is not None else None
    if fallback and fallback != "crystal_bpe":
        candidates.append(str(fallback))
    errors = []
    for candidate in candidates:
        if candidate == "qwen2.5":
            from plaidpp.data.tokenizer import qwen_tokenizer_dir

            candidate = str(qwen_tokenizer_dir())
        try:
            tokenizer = _read_tokenizer(candidate)
        except (OSError, ValueError, TypeError) as exc:
            errors.append(f"{candidate}: {type(exc).__name__}")
            continue
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"  # generation pads on the left; training pads itself (PadCollator)
        return tokenizer
    raise UserError(f"no tokenizer found ({'; '.join(errors)})")


def is_adapter_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def load_model_and_tokenizer(path_or_name: str, cfg_model: ModelSettings, for_training: bool):
    """Load a generator for sampling (``for_training=False``: eval mode) or further training (DPO, SFT).

    Handles a full model directory or hub name, a LoRA adapter directory (base from the adapter's
    ``base_model_name_or_path`` unless ``cfg_model.pretrained`` is set), and 4-bit loading when
    ``cfg_model.quantization`` is set. A full model is given a fresh LoRA adapter for training when
    ``cfg_model.lora`` is set, so a pretrained base trains the same way whether it came from the hub or disk.
    """
    from peft import PeftModel

    path_or_name = str(path_or_name)
    tokenizer = load_tokenizer(path_or_name, cfg_model)
    if is_adapter_dir(path_or_name):
        import json

        base_name = json.loads((Path(path_or_name) / "adapter_config.json").read_text())["base_model_name_or_path"]
        base = load_base_model(cfg_model.pretrained or base_name, cfg_model)
        model = PeftModel.from_pretrained(base, path_or_name, is_trainable=for_training)
    else:
        model = load_base_model(path_or_name, cfg_model)
        if for_training and cfg_model.lora.enabled:
            model = add_lora(model, cfg_model)
    if not _device_map(cfg_model.quantization.load_in_4bit) and torch.cuda.is_available():
        model = model.to("cuda")
    model.train(for_training)
    if not for_training:
        model.requires_grad_(False)
    return model, tokenizer


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def check_trained_on(model_dir: str | os.PathLike, repr_name: str) -> None:
    """Refuse to sample ``repr_name`` text from a model trained on another representation (its SFT record says).

    Without this, every sample of a coords model asked for Wyckoff text would count as a parse failure."""
    import json

    record = Path(model_dir) / "training_data.json"
    trained = json.loads(record.read_text()).get("repr") if record.is_file() else None
    if trained and trained != repr_name:
        raise UserError(f"{model_dir} was trained on {trained!r} text, not {repr_name!r}; run with repr={trained} "
                        "(or params.yaml generator.repr)")


def model_fingerprint(path: str | os.PathLike) -> str:
    """Identifies a saved model by content: sha256 over its config and weight files (each read in 1 MB blocks;
    the tiny model's 15 MB take ~20 ms). Files over 2 GB count by name, size and mtime only, so a 7B base
    stays cheap; an adapter directory is small and hashed whole. Used to refuse resuming a samples file
    with another model."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name.endswith(
        ("config.json", "tokenizer.json"))))
    for file in files:
        digest.update(file.name.encode())
        stat = file.stat()
        if stat.st_size > 2 * 1024**3:
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
            continue
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def count_parameters(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"parameters": int(total), "trainable_parameters": int(trainable)}
