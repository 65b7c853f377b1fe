"""Training on two processes through accelerate (the multi-GPU path, run here on 2 CPU processes): the same
loss as one process with the same effective batch, and one output written once.

The shipped DDP config starts the processes through torchrun; on a machine without CUDA they train on the CPU
with gloo. (``accelerate launch --cpu --num_processes 2`` starts one process in accelerate 1.15: without an
MPI host file its ``--cpu`` path is the single-process launcher.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from plaidpp.config import PROJECT_ROOT

from .conftest import shrunk_overrides
from .test_rlip_dpo import DPO_OVERRIDES, pi0  # noqa: F401 - pi0 is a fixture: a tiny policy and six pairs

# Measured 2026-12-04, 2 CPU processes (gloo) against 1, 3 SFT steps: final and mean loss identical to the last
# bit (each step sees the same examples; the Trainer averages tokens across processes). The tolerance leaves room
# for a different order of float reductions on other hardware.
LOSS_RTOL = 1e-4
# After one DPO step the two policies differ a little more (measured: DPO loss 1.8e-4, margin 1.1e-4 relative):
# Adam's first step moves every weight by about lr * sign(gradient), so components whose gradient is at the
# level of float noise can move either way when the sum over six pairs is taken in another order.
DPO_AFTER_RTOL = 1e-3


def _sft(tmp_path: Path, name: str, processes: int, batch_size: int) -> dict:
    overrides = shrunk_overrides("sft", tmp_path, [
        "data.max_rows_per_split=32", "train.splits=[train]", "train.max_steps=3", "train.logging_steps=1",
        f"train.batch_size={batch_size}", f"out_dir={tmp_path / name}", f"checkpoint_dir={tmp_path / (name + '.ckpt')}",
        f"metrics_file={tmp_path / (name + '.json')}"])
    launcher = [] if processes == 1 else [
        "-m", "accelerate.commands.launch", "--config_file", str(PROJECT_ROOT / "conf/accelerate/ddp.yaml"),
        "--num_processes", str(processes), "--mixed_precision", "no"]
    cmd = [sys.executable, *launcher, "-m", "plaidpp.cli", "sft", *overrides]
    result = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((tmp_path / name / "sft_summary.json").read_text())


@pytest.mark.slow
def test_sft_on_two_processes_matches_one_process_with_the_same_effective_batch(tmp_path):
    one = _sft(tmp_path, "one", 1, 8)
    two = _sft(tmp_path, "two", 2, 4)
    assert (one["processes"], two["processes"]) == (1, 2)
    assert one["n_examples_seen"] == two["n_examples_seen"] == 24
    assert two["final_loss"] == pytest.approx(one["final_loss"], rel=LOSS_RTOL)
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=LOSS_RTOL)
    assert not (tmp_path / "two.tmp").exists()  # written once, renamed once


@pytest.mark.slow
def test_a_dpo_round_on_two_processes_matches_one_process(pi0, tmp_path):  # noqa: F811 - the fixture
    """Six pairs in one step: 6 on one process, 3 on each of two. Loss before and after the step agree."""
    def dpo(name: str, processes: int, batch_size: int) -> dict:
        overrides = shrunk_overrides("dpo", tmp_path, [
            *DPO_OVERRIDES, f"policy={pi0 / 'pi0'}", f"pairs_file={pi0 / 'pairs.jsonl'}", f"out={tmp_path / name}",
            f"dpo.batch_size={batch_size}", "dpo.epochs=1"])
        launcher = [] if processes == 1 else [
            "-m", "accelerate.commands.launch", "--config_file", str(PROJECT_ROOT / "conf/accelerate/ddp.yaml"),
            "--num_processes", str(processes), "--mixed_precision", "no"]
        result = subprocess.run([sys.executable, *launcher, "-m", "plaidpp.cli", "dpo", *overrides], cwd=PROJECT_ROOT,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads((tmp_path / name / "dpo_summary.json").read_text())

    one, two = dpo("one", 1, 6), dpo("two", 2, 3)
    assert one["n_pairs"] == two["n_pairs"] == 6
    assert two["dpo/loss_first"] == pytest.approx(one["dpo/loss_first"], rel=LOSS_RTOL)
    for key in ("dpo/after_loss", "dpo/after_margins"):  # the trained policy against pi_0 on the six pairs
        assert two[key] == pytest.approx(one[key], rel=DPO_AFTER_RTOL), key
