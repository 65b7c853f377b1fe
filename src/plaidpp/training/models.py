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

import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from plaidpp.errors import UserError


def _plain(cfg: Any) -> dict:
    if cfg is None:
        return {}
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def torch_dtype(name: str | None) -> torch.dtype | None:
    if name in (None, "auto"):
        return None
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def build_tiny_model(cfg_model: DictConfig, tokenizer):
    """A randomly initialised Qwen2 causal LM sized by ``cfg_model.architecture`` for ``tokenizer``."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    arch = _plain(cfg_model.architecture)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,  # the embedding is a large share of a tiny model; tying halves it
        **arch,
    )
    torch.manual_seed(int(cfg_model.get("init_seed", 0)))
    return Qwen2ForCausalLM(config)


def quantization_config(cfg_model: DictConfig):
    """A ``BitsAndBytesConfig`` from ``cfg_model.quantization`` (null = no quantization)."""
    quant = _plain(cfg_model.get("quantization"))
    if not quant:
        return None
    from transformers import BitsAndBytesConfig

    if "bnb_4bit_compute_dtype" in quant:
        quant["bnb_4bit_compute_dtype"] = torch_dtype(quant["bnb_4bit_compute_dtype"])
    return BitsAndBytesConfig(**quant)


def _device_map(quantized: bool):
    # bitsandbytes places weights at load time; under accelerate/DDP each process takes its own GPU.
    if quantized and torch.cuda.is_available():
        return {"": int(os.environ.get("LOCAL_RANK", 0))}
    return None


def load_base_model(name_or_path: str, cfg_model: DictConfig):
    """A pretrained causal LM, quantized when configured (no adapter)."""
    from transformers import AutoModelForCausalLM

    quant = quantization_config(cfg_model)
    kwargs: dict[str, Any] = {"dtype": torch_dtype(cfg_model.get("dtype"))}
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = _device_map(True)
    if cfg_model.get("attn_implementation"):
        kwargs["attn_implementation"] = cfg_model.attn_implementation
    try:
        return AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
    except OSError as exc:
        raise UserError(f"cannot load model {name_or_path!r} (no local dir and offline?): {exc}") from None


def add_lora(model, cfg_model: DictConfig):
    """Wrap ``model`` in a trainable LoRA adapter per ``cfg_model.lora`` (k-bit preparation when quantized)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    lora = _plain(cfg_model.lora)
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=bool(cfg_model.get("gradient_checkpointing", False)),
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    config = LoraConfig(
        r=int(lora["r"]),
        lora_alpha=int(lora["alpha"]),
        lora_dropout=float(lora["dropout"]),
        target_modules=list(lora["target_modules"]),
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


def load_tokenizer(path_or_name: str, cfg_model: DictConfig | None = None):
    """The tokenizer saved beside a model; else ``cfg_model.tokenizer`` (``qwen2.5`` = the vendored files).

    Use this rather than ``AutoTokenizer`` for the tiny model's directory (see ``_read_tokenizer``).
    """
    candidates = [str(path_or_name)]
    fallback = cfg_model.get("tokenizer") if cfg_model is not None else None
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


def load_model_and_tokenizer(path_or_name: str, cfg_model: DictConfig, for_training: bool):
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
        base = load_base_model(cfg_model.get("pretrained") or base_name, cfg_model)
        model = PeftModel.from_pretrained(base, path_or_name, is_trainable=for_training)
    else:
        model = load_base_model(path_or_name, cfg_model)
        if for_training and cfg_model.get("lora"):
            model = add_lora(model, cfg_model)
    if not _device_map(bool(cfg_model.get("quantization"))) and torch.cuda.is_available():
        model = model.to("cuda")
    model.train(for_training)
    if not for_training:
        model.requires_grad_(False)
    return model, tokenizer


def count_parameters(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"parameters": int(total), "trainable_parameters": int(trainable)}
