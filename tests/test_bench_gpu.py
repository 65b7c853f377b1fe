"""``make bench-gpu`` at its CPU scale, end to end: every part runs in its own process and records figures that
add up (185 new tokens per crystal, the training steps at their batch, a relaxation per potential)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import PROJECT_ROOT

BENCH = PROJECT_ROOT / "benchmarks" / "bench_gpu.py"


@pytest.mark.slow
def test_the_cpu_scale_runs_every_part(tmp_path, tiny_model_dir):
    out = tmp_path / "bench_gpu.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--scale", "cpu", "--out", str(out), "--work",
                           str(tmp_path / "work"), "--tiny-model", str(tiny_model_dir)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(out.read_text())
    assert record["device"].startswith("CPU") and record["scale"]["name"] == "cpu"
    parts = record["parts"]
    assert not [name for name, figures in parts.items() if "failed" in figures], parts
    for name in ("generate_hf", "generate_vllm"):
        figures = parts[name]
        if name == "generate_vllm" and "skipped" in figures:  # vLLM absent: the part says so instead of failing
            assert "not installed" in figures["skipped"]
            continue
        assert figures["crystals"] == 4 and figures["new_tokens_each"] == 185
        # every crystal is exactly 185 new tokens
        assert figures["tokens_per_s"] * figures["seconds"] == pytest.approx(185 * 4, rel=0.01)
    assert parts["sft_step"]["batch"] == 2 and parts["sft_step"]["s_per_step"] > 0
    assert not parts["sft_step"]["quantized_4bit"]  # 4-bit is the GPU's
    assert parts["dpo_step"]["steps"] == 3 and parts["dpo_step"]["s_per_step"] > 0
    for mlip in ("chgnet", "sevennet", "sevennet_torchsim"):  # the last batched: relax.engine=torchsim
        assert parts["relax"][mlip]["relaxations"] == 1 and parts["relax"][mlip]["relaxations_per_s"] > 0
    assert parts["tiny"]["crystals"] == 8 and parts["tiny"]["engine"] == "compact"
    assert "generate_hf" in proc.stdout and str(out) in proc.stdout  # the printed table


def test_an_unknown_part_is_refused_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH), "--parts", "generate_hf,warp_drive", "--out",
                           str(tmp_path / "b.json"), "--work", str(tmp_path)], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and proc.stderr.strip().splitlines() == [
        "bench_gpu: unknown part(s) warp_drive; parts: generate_hf, generate_vllm, sft_step, dpo_step, relax, tiny"]
    assert not (tmp_path / "b.json").exists()


def test_a_cpu_scale_run_never_replaces_the_accelerator_record(tmp_path):
    """``make bench-gpu`` on a CPU writes its own record; pointed at a GPU-scale record it refuses (issue 31)."""
    record = tmp_path / "bench_gpu.json"
    committed = (PROJECT_ROOT / "metrics" / "bench_gpu.json").read_text()
    record.write_text(committed)
    proc = subprocess.run([sys.executable, str(BENCH), "--scale", "cpu", "--out", str(record), "--parts", "tiny",
                           "--work", str(tmp_path / "work")], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and "holds a GPU-scale record" in proc.stderr
    assert record.read_text() == committed
    assert json.loads(committed)["scale"]["name"] == "gpu"  # the committed record is the accelerator's
