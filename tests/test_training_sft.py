"""SFT on real MP-20 rows with a shrunken tiny model: tokenizer, loss masking, task mix, training, resume."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from plaidpp.config import PROJECT_ROOT, compose
from plaidpp.settings.model import TaskMixSettings

from .conftest import shrunk_overrides

PAPER_MIX = TaskMixSettings()  # infill one third of the time (appendix 7.2)


def sft_overrides(tmp_path: Path, *extra: str) -> list[str]:
    """A real sft config, shrunk: 24 train rows encoded from the vendored CSV (no prepare output in tmp_path)."""
    return shrunk_overrides("sft", tmp_path, ["data.max_rows_per_split=24", "train.splits=[train]",
                                              "train.batch_size=4", "train.logging_steps=1", *extra], tracking=True)


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    from plaidpp.training.data import load_training_rows

    tmp = tmp_path_factory.mktemp("rows")
    cfg = compose("sft", sft_overrides(tmp))
    rows, sources = load_training_rows(cfg, "wyckoff", ["train"])
    assert "encoded from" in sources["train"]
    return rows


@pytest.fixture(scope="module")
def crystal_tokenizer(rows, tmp_path_factory):
    from plaidpp.training.models import load_tokenizer
    from plaidpp.training.sft import tokenizer_corpus
    from plaidpp.training.tokenizer import train_crystal_tokenizer

    tokenizer = train_crystal_tokenizer(tokenizer_corpus(rows[:16], 0, PAPER_MIX), 400)
    directory = tmp_path_factory.mktemp("tok")
    tokenizer.save_pretrained(str(directory))
    return load_tokenizer(str(directory))


def test_crystal_tokenizer_round_trips_unseen_crystals_and_keeps_numbers_whole(rows, crystal_tokenizer):
    # Trained on rows[:16]; rows[16:] are unseen text. Decoding must give back the exact string.
    for row in rows[16:]:
        ids = crystal_tokenizer(row["text"], add_special_tokens=False)["input_ids"]
        assert crystal_tokenizer.decode(ids) == row["text"]
    # A frequent coordinate is one integer-part token and one fraction token, not five characters.
    assert crystal_tokenizer.tokenize(" 0.000") == ["Ġ0.", "000"]


def test_tokenizer_survives_a_qwen2_model_directory(crystal_tokenizer, tmp_path):
    """AutoTokenizer would swap in Qwen2Tokenizer (digit-splitting) beside a qwen2 config.json."""
    from transformers import Qwen2Config

    from plaidpp.training.models import load_tokenizer

    crystal_tokenizer.save_pretrained(str(tmp_path))
    Qwen2Config(vocab_size=len(crystal_tokenizer)).save_pretrained(str(tmp_path))
    loaded = load_tokenizer(str(tmp_path))
    text = "abc: 5.82 5.82 15.06\nTa 0.000 0.250 0.250 2a"
    assert loaded.tokenize(text) == crystal_tokenizer.tokenize(text)
    assert loaded.eos_token_id == crystal_tokenizer.eos_token_id


def test_loss_is_on_the_completion_only(rows, crystal_tokenizer):
    from plaidpp.training.data import SFTDataset

    dataset = SFTDataset(rows, crystal_tokenizer, epochs=1, seed=0, max_length=4096, mix=PAPER_MIX)
    for index in range(len(dataset)):
        example = dataset.example(index)
        item = dataset[index]
        prompt_len = len(crystal_tokenizer(example.prompt, add_special_tokens=False)["input_ids"])
        labels = item["labels"]
        assert all(label == -100 for label in labels[:prompt_len])
        assert labels[prompt_len:] == item["input_ids"][prompt_len:]
        assert labels[-1] == crystal_tokenizer.eos_token_id
        completion = crystal_tokenizer.decode(labels[prompt_len:-1])
        assert completion == example.completion


def test_epochs_redraw_the_task_mix(rows, crystal_tokenizer):
    from plaidpp.training.data import SFTDataset

    dataset = SFTDataset(rows, crystal_tokenizer, epochs=40, seed=0, max_length=4096, mix=PAPER_MIX)
    tasks = [dataset.example(i).task for i in range(len(dataset))]
    infill = tasks.count("infill") / len(tasks)
    assert abs(infill - 1 / 3) < 0.05  # 960 draws: 3 sigma is ~0.045
    # the mix is a setting: no infill at all when asked
    no_infill = SFTDataset(rows, crystal_tokenizer, 5, 0, 4096, TaskMixSettings(infill=0.0, unconditional=0.5))
    assert all(no_infill.example(i).task != "infill" for i in range(len(no_infill)))
    # The same row gets different tasks in different epochs (fresh prompts, not one repeated example).
    assert len({dataset.example(e * len(rows)).prompt for e in range(40)}) > 3
    # And the draw is deterministic, so a resumed run sees the same examples.
    assert dataset.example(123) == SFTDataset(rows, crystal_tokenizer, 40, 0, 4096, PAPER_MIX).example(123)


def test_iterating_the_dataset_ends_at_its_length(rows, crystal_tokenizer):
    """transformers' length grouping iterates the dataset: it must stop after ``len`` items (1.5 epochs here)."""
    from plaidpp.training.data import SFTDataset

    dataset = SFTDataset(rows, crystal_tokenizer, epochs=1.5, seed=0, max_length=4096, mix=PAPER_MIX)
    seen = sum(1 for _ in itertools.islice(iter(dataset), len(dataset) + 10))  # bounded: the bug never ended
    assert seen == len(dataset) == round(1.5 * len(rows))
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_length_grouped_batches_train_to_the_end(tmp_path):
    """train.sampling_strategy=group_by_length reaches transformers' sampler, which iterates the whole dataset
    first to learn the lengths, and the run still ends (it hung while the dataset wrapped around)."""
    from plaidpp.training.sft import _training_args, sft

    cfg = compose("sft", sft_overrides(tmp_path, "train.sampling_strategy=group_by_length", "train.epochs=1"))
    assert _training_args(cfg, tmp_path / "ckpt").train_sampling_strategy == "group_by_length"
    summary = sft(cfg)
    assert summary["n_examples_seen"] == 24 and summary["steps"] == -(-24 // (cfg.train.batch_size * cfg.train.grad_accum))


def test_sft_trains_and_writes_a_loadable_model(tmp_path):
    import mlflow
    import torch

    from plaidpp.training.models import load_model_and_tokenizer
    from plaidpp.training.sft import sft

    cfg = compose("sft", sft_overrides(tmp_path, "train.max_steps=8", "train.lr=1e-2"))
    summary = sft(cfg)
    out = Path(cfg.out_dir)
    assert summary["steps"] == 8
    record = json.loads((out / "training_data.json").read_text())
    assert record["splits"] == ["train"] and record["n_rows"] == 24 and len(record["material_ids"]) == 24
    assert json.loads(Path(cfg.metrics_file).read_text())["steps"] == 8
    assert not Path(cfg.checkpoint_dir).exists()  # removed after a finished run
    model, tokenizer = load_model_and_tokenizer(str(out), cfg.model, for_training=False)
    assert not model.training and tokenizer.tokenize(" 0.500") == ["Ġ0.", "500"]
    ids = tokenizer("abc:", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()
    # MLflow got the loss curve and throughput.
    mlflow.set_tracking_uri(cfg.tracking.uri)
    run = mlflow.search_runs(experiment_names=[cfg.tracking.experiment], output_format="list")[0]
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert len(history) == 8
    assert history[-1].value < history[0].value - 0.5  # it learns: from ~ln(400) = 6 towards the format
    assert "tokens_per_s" in run.data.metrics and run.data.params["model.name"] == "tiny"
    assert len(run.data.tags["git_commit"]) == 40 or run.data.tags["git_commit"] == "unknown"  # the code it ran


# Runs `plaidpp sft` in a child that SIGKILLs itself right after its first checkpoint is on disk, so the
# kill lands at the same step on any machine (polling for the checkpoint from outside raced fast CPUs).
DIE_AFTER_FIRST_CHECKPOINT = """
import os, signal, sys
import transformers
from plaidpp.cli import main
save = transformers.Trainer._save_checkpoint
def save_then_die(self, *args, **kwargs):
    save(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
transformers.Trainer._save_checkpoint = save_then_die
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_sft_resumes_after_a_kill(tmp_path):
    """A real `plaidpp sft` process killed after its first checkpoint; the re-run continues from it."""
    overrides = sft_overrides(tmp_path, "train.max_steps=12", "train.save_steps=3")
    proc = subprocess.run([sys.executable, "-c", DIE_AFTER_FIRST_CHECKPOINT, "sft", *overrides], cwd=PROJECT_ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-3000:]
    checkpoints = tmp_path / ".cache" / "checkpoints" / "sft"
    done = sorted(int(p.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*"))
    assert done == [3]
    assert not (tmp_path / "models" / "sft").exists()

    from plaidpp.training.sft import sft

    summary = sft(compose("sft", overrides))
    assert summary["resumed_from"] is not None and summary["resumed_from"].endswith(f"checkpoint-{done[-1]}")
    assert summary["steps"] == 12
    assert (tmp_path / "models" / "sft" / "model.safetensors").exists()


def test_changed_config_does_not_resume_stale_checkpoints(tmp_path):
    from plaidpp.training.sft import _prepare_checkpoint_dir

    cfg = compose("sft", sft_overrides(tmp_path))
    ckpt = _prepare_checkpoint_dir(cfg)
    (ckpt / "checkpoint-3").mkdir()
    assert (_prepare_checkpoint_dir(cfg) / "checkpoint-3").exists()  # same config: kept
    changed = compose("sft", sft_overrides(tmp_path, "train.lr=0.5"))
    assert not (_prepare_checkpoint_dir(changed) / "checkpoint-3").exists()
