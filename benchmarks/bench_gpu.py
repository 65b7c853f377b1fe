"""The paper-scale path timed on one accelerator: sampling, one QLoRA SFT step, one DPO step, relaxations.

    make bench-gpu                     # = python benchmarks/bench_gpu.py (GPU scale on CUDA, else CPU scale)
    python benchmarks/bench_gpu.py --scale cpu --parts generate_hf,relax --out /tmp/bench.json

Needs no download: the generator is the Qwen2.5-7B architecture built from its config with random weights
(throughput does not depend on the weights), every crystal is 185 new tokens (the paper's mean; EOS ignored),
the potentials ship in their wheels and the crystals are the vendored MP-20 rows. Each part runs in its own
process (the memory it peaks at is its own, and a part that fails is recorded, not fatal):

- generate_hf / generate_vllm: crystals/s and tokens/s (the paper: 10,000 in ~23 min on an H100 with vLLM);
  hf is ``model.generate`` in batches, vllm the offline engine (``sampler.engine=vllm``; skipped without the
  extra). GPU scale: 10,000 crystals with vLLM, 1,000 with hf (its rate is per crystal, so 10,000 would only
  take longer; the table says how many each drew).
- sft_step: one optimiser step of QLoRA (4-bit NF4 base + LoRA r 8 via ``training.models``) at the paper's
  batch, 4 per step x 4 accumulation = 16 crystals; s/step (mean of 2 after 1 warm-up) and peak memory.
- dpo_step: one step of plaidpp's TRL ``DPOTrainer`` (``training.dpo.build_trainer``) at batch 16 pairs,
  reference = a frozen copy of the policy (the paper's iteration 1); s/step (steps 2-3) and peak memory.
- relax: relaxations/s of CHGNet and SevenNet-0 on rattled MP-20 crystals, one at a time through ASE, and of
  SevenNet-0 batched through torch-sim (``relax.engine=torchsim``, ``relax.batch_size`` crystals in flight), with
  the evaluation's relax settings.
- tiny: the tiny model (``--tiny-model``, default models/sft from ``make run``) through plaidpp's sampler.

The CPU scale runs the same code on a 2-layer, 128-wide Qwen2 with the 7B's vocabulary, small counts and
short batches (``tests/test_bench_gpu.py`` runs it end to end); its figures say nothing about a GPU.
Writes ``--out`` and prints a table naming the device. The default record follows the scale: the accelerator
record ``metrics/bench_gpu.json`` (committed) at GPU scale, ``benchmarks/results/bench_gpu_cpu.json`` at CPU scale;
a CPU-scale run never replaces a GPU-scale record, whatever ``--out`` says (``--force`` to overwrite anyway).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

PARTS = ("generate_hf", "generate_vllm", "sft_step", "dpo_step", "relax", "tiny")
NEW_TOKENS = 185  # the paper's mean crystal length, tokens
# Qwen/Qwen2.5-7B's config.json (the architecture the paper fine-tunes)
QWEN25_7B = {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
             "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 32768,
             "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "hidden_act": "silu",
             "bos_token_id": 151643, "eos_token_id": 151643}


@dataclass
class Scale:
    name: str
    arch: dict = field(default_factory=dict)  # changes to QWEN25_7B
    n_vllm: int = 10_000
    n_hf: int = 1_000
    hf_batch: int = 250
    micro_batch: int = 4  # x accumulation = the paper's 16
    accumulation: int = 4
    max_length: int = 1024
    n_relax: int = 40
    n_tiny: int = 2_000


GPU = Scale("gpu")
CPU = Scale("cpu", arch={"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
                         "num_attention_heads": 4, "num_key_value_heads": 2},
            n_vllm=4, n_hf=4, hf_batch=4, micro_batch=2, accumulation=1, max_length=96, n_relax=1, n_tiny=8)


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"CPU: {line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    return "CPU"


def _peak_gib() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def _random_model_dir(scale: Scale, work: Path) -> Path:
    """The Qwen2.5-7B architecture (scaled on CPU) with random bf16 weights, saved once (4-bit loading and the
    DPO trainer read a directory), with the vendored Qwen2.5 tokenizer beside it."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from plaidpp.data.tokenizer import load_qwen_tokenizer

    out = work / f"qwen2.5-7b-random-{scale.name}"
    if (out / "config.json").is_file():
        return out
    cuda = torch.cuda.is_available()
    config = Qwen2Config(**{**QWEN25_7B, **scale.arch}, dtype="bfloat16" if cuda else "float32")
    torch.manual_seed(0)
    with torch.device("cuda" if cuda else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if cuda else torch.float32)
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp, max_shard_size="5GB")
    load_qwen_tokenizer().save_pretrained(tmp)
    tmp.rename(out)
    return out


def _prompt_ids(n: int) -> list[list[int]]:
    from plaidpp.data.tokenizer import load_qwen_tokenizer
    from plaidpp.prompts import unconditional_prompt

    ids = load_qwen_tokenizer()(unconditional_prompt(), add_special_tokens=False)["input_ids"]
    return [list(ids) for _ in range(n)]


def generate_hf(scale: Scale, work: Path, args) -> dict:  # noqa: ANN001
    import torch
    from transformers import AutoModelForCausalLM

    model_dir = _random_model_dir(scale, work)
    cuda = torch.cuda.is_available()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if cuda else torch.float32)
    model = model.to("cuda" if cuda else "cpu").eval()
    prompts = _prompt_ids(scale.n_hf)
    done = tokens = 0
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(prompts), scale.hf_batch):
            batch = torch.tensor(prompts[start:start + scale.hf_batch], device=model.device)
            out = model.generate(batch, attention_mask=torch.ones_like(batch), do_sample=True, temperature=0.7,
                                 top_k=0, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                 pad_token_id=QWEN25_7B["eos_token_id"])
            done += len(batch)
            tokens += (out.shape[1] - batch.shape[1]) * len(batch)
    seconds = time.perf_counter() - started
    return {"crystals": done, "new_tokens_each": NEW_TOKENS, "batch": scale.hf_batch, "seconds": round(seconds, 2),
            "crystals_per_s": round(done / seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            "peak_gib": _peak_gib()}


def generate_vllm(scale: Scale, work: Path, args) -> dict:  # noqa: ANN001
    from plaidpp.sampling.vllm_engine import _environment, available
    from plaidpp.settings.sampling import VllmSettings

    if not available():
        return {"skipped": "vLLM not installed (make test-vllm builds .venv-vllm; on a GPU: pip install vllm==0.32.0 "
                           "&& pip install -e .)"}
    import torch

    cuda = torch.cuda.is_available()
    _environment(VllmSettings(), cuda)  # the runner and KV-cache settings plaidpp's engine samples with
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    model_dir = _random_model_dir(scale, work)
    llm = LLM(model=str(model_dir), skip_tokenizer_init=True, max_model_len=512, seed=0,
              dtype="bfloat16" if cuda else "float32", enforce_eager=not cuda,
              gpu_memory_utilization=0.85, load_format="dummy")
    params = SamplingParams(temperature=0.7, max_tokens=NEW_TOKENS, min_tokens=NEW_TOKENS, ignore_eos=True,
                            detokenize=False)
    prompts = [TokensPrompt(prompt_token_ids=ids) for ids in _prompt_ids(scale.n_vllm)]
    started = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=True)
    seconds = time.perf_counter() - started
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    return {"crystals": len(outputs), "new_tokens_each": NEW_TOKENS, "seconds": round(seconds, 2),
            "crystals_per_s": round(len(outputs) / seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            "minutes_per_10k": round(10_000 / (len(outputs) / seconds) / 60, 2)}


def _crystal_texts(n: int) -> list[str]:
    """Wyckoff texts of the first ``n`` vendored MP-20 training crystals (real lengths for the training steps)."""
    import pandas as pd
    from pymatgen.core import Structure

    from plaidpp.representation import get

    frame = pd.read_csv("data/raw/mp20/mp20_partial_merged.csv.gz", nrows=4 * n)
    wyckoff, texts = get("wyckoff"), []
    for cif in frame["cif"]:
        try:
            texts.append(wyckoff.encode(Structure.from_str(cif, fmt="cif")))
        except ValueError:
            continue
        if len(texts) == n:
            break
    return texts


def _model_overrides(model_dir: Path) -> list[str]:
    import torch

    base = ["model=qwen2.5-7b", f"model.pretrained={model_dir}"]
    if torch.cuda.is_available():
        return base
    # bitsandbytes' 4-bit path and bf16 are the GPU's; on a CPU the same LoRA trains in full precision
    return [*base, "model.quantization.load_in_4bit=false", "model.dtype=float32",
            "model.gradient_checkpointing=false"]


def sft_step(scale: Scale, work: Path, args) -> dict:  # noqa: ANN001
    import torch

    from plaidpp.config import compose
    from plaidpp.prompts import unconditional_prompt
    from plaidpp.training.models import add_lora, load_base_model, load_tokenizer

    model_dir = _random_model_dir(scale, work)
    cfg = compose("sft", _model_overrides(model_dir))
    tokenizer = load_tokenizer(str(model_dir), cfg.model)
    model = add_lora(load_base_model(str(model_dir), cfg.model), cfg.model)
    if torch.cuda.is_available() and not cfg.model.quantization.load_in_4bit:
        model = model.to("cuda")
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    texts = [unconditional_prompt() + t + tokenizer.eos_token
             for t in _crystal_texts(scale.micro_batch * scale.accumulation)]
    batches = [tokenizer(texts[i:i + scale.micro_batch], return_tensors="pt", padding=True, truncation=True,
                         max_length=scale.max_length) for i in range(0, len(texts), scale.micro_batch)]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr)
    device = next(p for p in model.parameters() if p.requires_grad).device
    times = []
    for _ in range(3):  # one warm-up, two timed
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
            (model(**batch, labels=labels).loss / len(batches)).backward()
        optimizer.step()
        optimizer.zero_grad()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    return {"batch": len(texts), "micro_batch": scale.micro_batch, "accumulation": len(batches),
            "tokens_per_step": tokens, "quantized_4bit": cfg.model.quantization.load_in_4bit,
            "s_per_step": round(sum(times[1:]) / 2, 3), "peak_gib": _peak_gib()}


def dpo_step(scale: Scale, work: Path, args) -> dict:  # noqa: ANN001
    from datasets import Dataset
    from transformers import TrainerCallback

    from plaidpp.config import compose
    from plaidpp.prompts import unconditional_prompt
    from plaidpp.training.dpo import build_trainer, dpo_args

    model_dir = _random_model_dir(scale, work)
    overrides = _model_overrides(model_dir)
    cfg = compose("dpo", [*overrides, "dpo=qwen2.5-7b", f"dpo.batch_size={scale.micro_batch}",
                          f"dpo.grad_accum={scale.accumulation}", f"dpo.max_length={scale.max_length}",
                          "dpo.max_steps=3", "dpo.warmup_steps=0", f"policy={model_dir}", "pairs_file=unused",
                          f"out={work / 'dpo-out'}"])
    per_step = scale.micro_batch * scale.accumulation
    texts = _crystal_texts(2 * per_step)
    pairs = [{"prompt": unconditional_prompt(), "chosen": texts[2 * i], "rejected": texts[2 * i + 1]}
             for i in range(per_step)] * 3
    args_ = dpo_args(cfg.dpo, work / "dpo-out", 0, cfg.model, len(pairs))
    trainer = build_trainer(model_dir, model_dir, Dataset.from_list(pairs), args_, cfg.model)

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_begin(self, *a, **k) -> None:  # noqa: ANN002, ANN003
            self.started = time.perf_counter()

        def on_step_end(self, *a, **k) -> None:  # noqa: ANN002, ANN003
            self.times.append(time.perf_counter() - self.started)

    timer = StepTimer()
    trainer.add_callback(timer)
    trainer.train()
    return {"batch_pairs": per_step, "micro_batch": scale.micro_batch, "accumulation": scale.accumulation,
            "steps": len(timer.times), "quantized_4bit": cfg.model.quantization.load_in_4bit,
            "s_per_step": round(sum(timer.times[1:]) / max(1, len(timer.times) - 1), 3), "peak_gib": _peak_gib()}


def relax(scale: Scale, work: Path, args) -> dict:  # noqa: ANN001
    import numpy as np
    import pandas as pd
    import torch
    from pymatgen.core import Structure

    from plaidpp.config import compose
    from plaidpp.evaluation.mlip import load_calculator
    from plaidpp.evaluation.relax import relax_structure

    structures = []
    for cif in pd.read_csv("data/raw/mp20/mp20_partial_merged.csv.gz", nrows=4 * scale.n_relax + 4)["cif"]:
        structure = Structure.from_str(cif, fmt="cif")
        structure.scale_lattice(structure.volume * 1.04**3)  # a generator's imperfect output, as the RLIP benchmark
        structure.perturb(0.05, seed=len(structures))
        structures.append(structure)
        if len(structures) == scale.n_relax + 1:
            break
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = {}
    for mlip in ("chgnet", "sevennet"):
        cfg = compose("evaluate", [f"mlip={mlip}", f"mlip.device={device}", "samples=unused", "out=unused"])
        calculator = load_calculator(cfg.mlip)
        relax_structure(structures[0], calculator, cfg.relax)  # warm-up (first call compiles / allocates)
        started = time.perf_counter()
        steps = [relax_structure(s, calculator, cfg.relax).force_calls for s in structures[1:]]
        seconds = time.perf_counter() - started
        out[mlip] = {"relaxations": len(steps), "seconds": round(seconds, 2),
                     "relaxations_per_s": round(len(steps) / seconds, 3), "mean_force_calls": float(np.mean(steps)),
                     "batched": False}
    from plaidpp.evaluation.batched import load_model, relax_batch

    cfg = compose("evaluate", ["mlip=sevennet", f"mlip.device={device}", "relax.engine=torchsim", "samples=unused",
                               "out=unused"])
    model = load_model(cfg.mlip)
    relax_batch(structures[:1], model, cfg.relax)  # warm-up
    started = time.perf_counter()
    steps = [r.force_calls for r in relax_batch(structures[1:], model, cfg.relax)]
    seconds = time.perf_counter() - started
    out["sevennet_torchsim"] = {"relaxations": len(steps), "seconds": round(seconds, 2),
                                "relaxations_per_s": round(len(steps) / seconds, 3),
                                "mean_force_calls": float(np.mean(steps)), "batched": cfg.relax.batch_size}
    return out


def tiny(scale: Scale, work: Path, args) -> dict:  # noqa: ANN001
    from plaidpp.config import compose
    from plaidpp.sampling.sample import plan_sampling, sample_model
    from plaidpp.settings.sampling import PromptSet

    model_dir = Path(args.tiny_model)
    if not (model_dir / "config.json").is_file():
        return {"skipped": f"no model at {model_dir} (make run trains models/sft)"}
    cfg = compose("sample", ["sampler.constraint=none"])
    out = work / "tiny-samples.jsonl"
    for stale in (out, out.with_name(out.name + ".run.json")):
        stale.unlink(missing_ok=True)
    plan = plan_sampling(model_dir, PromptSet(n_unconditional=scale.n_tiny, n_per_spacegroup=0, spacegroups=[]),
                         sampler=cfg.sampler, temperature=0.7, repr="wyckoff", seed=0, out_path=out)
    stats, info = sample_model(plan, cfg.model, progress=False)
    return {"crystals": stats.finals, "engine": cfg.sampler.engine, "device": info["device"],
            "crystals_per_s": round(stats.crystals_per_s, 2), "tokens_per_s": round(stats.tokens_per_s, 1),
            "attempt_parse_rate": round(stats.decoded / max(1, stats.attempts), 3), "peak_gib": _peak_gib()}


def _run_part(part: str, args) -> dict:  # noqa: ANN001
    """One part in a child process: its own memory peak, and a failure recorded instead of ending the run."""
    result = Path(args.work) / f"{part}.json"
    result.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--part", part, "--scale", args.scale, "--work", args.work,
               "--tiny-model", args.tiny_model]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    wall = round(time.perf_counter() - started, 1)
    if proc.returncode != 0 or not result.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"failed": tail[0][:300], "wall_s": wall}
    return {**json.loads(result.read_text()), "wall_s": wall}


def _fmt(figures: dict) -> str:
    if "skipped" in figures or "failed" in figures:
        return next(f"{k}: {v}" for k, v in figures.items() if k in ("skipped", "failed"))
    keys = ("crystals", "crystals_per_s", "tokens_per_s", "minutes_per_10k", "batch", "batch_pairs", "s_per_step",
            "peak_gib", "relaxations_per_s", "mean_force_calls", "wall_s")
    return ", ".join(f"{k} {figures[k]}" for k in keys if figures.get(k) is not None)


RECORDS = {"gpu": "metrics/bench_gpu.json", "cpu": "benchmarks/results/bench_gpu_cpu.json"}


def refuse_to_replace(out: Path, scale: str, force: bool) -> None:
    """A CPU-scale run must not overwrite an accelerator record: its figures say nothing about a GPU, and the
    GPU record costs a lent machine to remake."""
    if force or scale == "gpu" or not out.is_file():
        return
    try:
        previous = json.loads(out.read_text()).get("scale", {}).get("name")
    except (OSError, ValueError, AttributeError):
        previous = None
    if previous == "gpu":
        sys.exit(f"bench_gpu: {out} holds a GPU-scale record; a {scale}-scale run writes elsewhere (--out) "
                 "or replaces it only with --force")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("auto", "gpu", "cpu"), default="auto")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {','.join(PARTS)}")
    parser.add_argument("--out", help=f"default {RECORDS['gpu']} (GPU scale) or {RECORDS['cpu']} (CPU scale)")
    parser.add_argument("--force", action="store_true", help="let a CPU-scale run replace a GPU-scale record")
    parser.add_argument("--work", default=".cache/bench_gpu", help="the random model and scratch files")
    parser.add_argument("--tiny-model", default="models/sft")
    parser.add_argument("--part", help=argparse.SUPPRESS)  # internal: run one part in this process
    args = parser.parse_args()
    import torch

    if args.scale == "auto":
        args.scale = "gpu" if torch.cuda.is_available() else "cpu"
    scale = GPU if args.scale == "gpu" else CPU
    args.out = args.out or RECORDS[scale.name]
    Path(args.work).mkdir(parents=True, exist_ok=True)
    if args.part:
        result = globals()[args.part](scale, Path(args.work), args)
        (Path(args.work) / f"{args.part}.json").write_text(json.dumps(result))
        return
    refuse_to_replace(Path(args.out), scale.name, args.force)
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        sys.exit(f"bench_gpu: unknown part(s) {', '.join(unknown)}; parts: {', '.join(PARTS)}")
    started = time.perf_counter()
    record = {"device": device_name(), "scale": asdict(scale), "torch": torch.__version__, "parts": {}}
    for part in parts:
        print(f"[bench_gpu] {part} ...", flush=True)
        record["parts"][part] = _run_part(part, args)
    record["wall_s"] = round(time.perf_counter() - started, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"\n{record['device']} - {scale.name} scale, {record['wall_s']} s in all")
    for part, figures in record["parts"].items():
        if part == "relax" and "chgnet" in figures:
            for mlip in ("chgnet", "sevennet", "sevennet_torchsim"):
                print(f"  {'relax ' + mlip:<16} {_fmt(figures[mlip])}")
            continue
        print(f"  {part:<16} {_fmt(figures)}")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
