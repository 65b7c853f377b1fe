"""The evaluation's answers cannot be wrong without a word: each defect a hostile probe found, tested.

Cache keys that miss a setting, time-outs that stick, orphaned or fragile workers, checks that come after the
work, rates inflated by invalid crystals, silent overwrites, code run from a checkpoint, metrics reported as 0
when they were not computed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from plaidpp.config import PROJECT_ROOT, compose
from plaidpp.errors import UserError
from plaidpp.evaluation.score import score_samples
from plaidpp.evaluation.workers import IsolatedPool, cache_fingerprint
from plaidpp.representation import get

from .conftest import shrunk_overrides

CSV = PROJECT_ROOT / "data/raw/mp20/mp20_partial_merged.csv.gz"
NACL = ("Na4Cl4\nSpacegroup: Fm-3m\nabc: 5.69 5.69 5.69\nangles: 90.00 90.00 90.00\nSites (8)\n"
        "Na 0.000 0.000 0.000 4a\nCl 0.500 0.500 0.500 4b")


def _cfg(root, *extra):
    return compose("evaluate", shrunk_overrides("evaluate", root, [
        "samples=unused", "out=unused", "mlip=chgnet", f"novelty.reference=[{CSV}]", "progress=false",
        "relax.steps=40", "hull=mp20_fallback", *extra]))


# ------------------------------------------------------------------------------------------- 1. cache key
def test_every_setting_that_can_change_a_relaxation_is_in_the_cache_key():
    """A new field joins the key unless it says it cannot change a cached result: change each field of the
    three settings in turn; the key moves exactly for those marked part of it."""
    cfg = _cfg("/tmp/unused")
    base = cache_fingerprint(cfg.mlip, cfg.relax, cfg.symmetry)
    for settings in (cfg.mlip, cfg.relax, cfg.symmetry):
        for f in dataclasses.fields(settings):
            value = getattr(settings, f.name)
            if value is None:  # an unset checkpoint: its content is tested below
                continue
            other = (not value if isinstance(value, bool) else value * 2 + 1 if isinstance(value, (int, float))
                     else [0.05] if isinstance(value, list) and not value
                     else (value[0] - 1, value[1]) if isinstance(value, (tuple, list)) else f"{value}-other")
            changed = dataclasses.replace(settings, **{f.name: other})
            parts = {type(s): (changed if type(s) is type(settings) else s) for s in (cfg.mlip, cfg.relax, cfg.symmetry)}
            moved = cache_fingerprint(*parts.values()) != base
            assert moved is f.metadata["cache_key"], f"{type(settings).__name__}.{f.name}"


def test_a_checkpoint_is_named_in_the_key_by_its_content(tmp_path):
    cfg = _cfg(tmp_path)
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"one")
    spec = dataclasses.replace(cfg.mlip, checkpoint=str(ckpt), trust_checkpoint=True)
    first = cache_fingerprint(spec, cfg.relax, cfg.symmetry)
    time.sleep(0.01)
    ckpt.write_bytes(b"two")  # same path, new weights
    assert cache_fingerprint(spec, cfg.relax, cfg.symmetry) != first


@pytest.fixture(scope="module")
def crystal_text(mp20_rows):
    small = mp20_rows[mp20_rows["pretty_formula"] == "NaCl"].iloc[0]
    return get("wyckoff").encode(Structure.from_str(small["cif"], fmt="cif"))


def test_a_result_cached_under_other_settings_is_not_reused(tmp_path, crystal_text):
    rows = [{"text": crystal_text, "spacegroup": 225}]
    narrow, summary = score_samples(rows, _cfg(tmp_path, "relax.energy_window=[-1,0]", "novelty.enabled=false"))
    assert narrow["fail_reason"].iloc[0] == "energy_out_of_range"
    assert not narrow["relax_converged"].iloc[0] and summary["n_relax_unconverged"] == 0  # a failure, not the cap
    normal, _ = score_samples(rows, _cfg(tmp_path, "novelty.enabled=false"))  # the same cache file
    assert normal["relax_ok"].iloc[0] and not normal["relax_cached"].iloc[0]


def test_a_spacegroup_timeout_is_never_cached(tmp_path, crystal_text):
    rows = [{"text": crystal_text, "spacegroup": 225}]
    rushed, summary = score_samples(rows, _cfg(tmp_path, "symmetry.time_limit_s=0.0001", "novelty.enabled=false"))
    assert summary["spacegroup_failures"] == {"spacegroup_timeout": 1}
    again, _ = score_samples(rows, _cfg(tmp_path, "novelty.enabled=false"))
    assert int(again["spacegroup_achieved"].iloc[0]) == 225 and not again["relax_cached"].iloc[0]
    third, _ = score_samples(rows, _cfg(tmp_path, "novelty.enabled=false"))
    assert third["relax_cached"].iloc[0]  # a completed result is cached


# ------------------------------------------------------------------------------------------- 2. workers
def crash_on_two(x: int) -> int:
    """A job that kills its worker (as a segfault in a native library would) for one input."""
    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * 10


def _noop() -> None:
    pass


@pytest.mark.parametrize("n", [1, 2])
def test_a_crash_costs_only_the_crystal_that_caused_it(n):
    pool = IsolatedPool(n, _noop)
    try:
        results = {key: (status, value) for key, status, value in pool.run(crash_on_two, {k: (k,) for k in range(5)})}
    finally:
        pool.close()
    assert results[2][0] == "crashed"
    assert {k: v for k, (s, v) in results.items() if s == "ok"} == {0: 0, 1: 10, 3: 30, 4: 40}


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


@pytest.mark.slow
def test_workers_die_with_a_killed_evaluation(tmp_path, mp20_rows):
    """SIGKILL of `plaidpp evaluate workers=2` mid-relaxation: its workers and the resource tracker go too."""
    rattled = []
    for cif in mp20_rows[mp20_rows["split"] == "test"]["cif"].head(40):
        s = Structure.from_str(cif, fmt="cif")
        s.perturb(0.2)
        rattled.append({"text": get("coords").encode(s), "repr": "coords", "spacegroup": None})
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rattled))
    cmd = [sys.executable, "-m", "plaidpp.cli", "evaluate", "--samples", str(samples), "--out", str(tmp_path / "o"),
           *shrunk_overrides("evaluate", tmp_path, ["workers=2", "mlip=chgnet", "novelty.enabled=false"])]
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    workers: set[int] = set()
    while time.time() < deadline and len(workers) < 3:  # two workers + the resource tracker
        assert proc.poll() is None
        workers = _descendants(proc.pid)
        time.sleep(0.2)
    assert len(workers) >= 3, workers
    time.sleep(3)  # let them load the potential and start relaxing
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 15
    while time.time() < deadline and any(Path(f"/proc/{p}").exists() for p in workers):
        time.sleep(0.2)
    alive = [p for p in workers if Path(f"/proc/{p}").exists() and "Z" not in (Path(f"/proc/{p}/stat").read_text()
                                                                               .rsplit(")", 1)[1].split()[:1])]
    assert alive == []


# ------------------------------------------------------------------------------------------- 3. checks first
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "plaidpp.cli", *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=300)


def test_bad_outputs_and_a_missing_reference_are_refused_before_any_relaxation(tmp_path, crystal_text):
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"text": crystal_text, "spacegroup": None}) + "\n")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    base = shrunk_overrides("evaluate", tmp_path, ["mlip=chgnet"])
    cases = [
        (["--out", str(a_file)], "is a file, not a folder"),
        (["--out", str(a_file / "sub")], "cannot be written"),
        (["--out", str(tmp_path / "o"), f"novelty.reference=[{tmp_path}/absent.jsonl]"],
         "novelty reference not found"),
    ]
    for args, says in cases:
        result = _cli("evaluate", "--samples", str(samples), *args, *base)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and says in result.stderr, result.stderr
    assert not (tmp_path / ".cache" / "evaluation").exists()  # nothing was relaxed


# ------------------------------------------------------------------------------------------- 4. inflated rates
def test_invalid_and_noble_gas_crystals_are_never_unique_novel_or_stable(tmp_path):
    overlapping = NACL.replace("Cl 0.500 0.500 0.500 4b", "Cl 0.000 0.000 0.000 4a")
    tiny_cell = NACL.replace("abc: 5.69 5.69 5.69", "abc: 0.10 0.10 0.10")
    neon = get("wyckoff").encode(Structure(Lattice.cubic(4.43), ["Ne"] * 4,
                                           [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]))
    rows = [{"text": t, "spacegroup": None} for t in (overlapping, tiny_cell, neon)]
    table, summary = score_samples(rows, _cfg(tmp_path))
    assert [r.split(":")[0] for r in table["fail_reason"]] == ["invalid_structure", "invalid_structure",
                                                               "noble_gas_only"]
    assert not table["is_unique"].any() and not table["is_novel"].any() and not table["is_stable"].any()
    assert summary["uniqueness_rate"] == summary["novelty_rate"] == summary["sun_rate"] == 0.0
    assert summary["n_noble_gas_only"] == 1 and not table["valid_composition"].iloc[2]


# ------------------------------------------------------------------------------------------- 5. overwrite
def test_a_second_evaluation_of_one_folder_and_an_unfinished_attempt_file_are_refused(tmp_path, crystal_text):
    from plaidpp.evaluation.evaluate import evaluate
    from plaidpp.io import exclusive

    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"text": crystal_text, "spacegroup": None}) + "\n")
    out = tmp_path / "o"
    cfg = dataclasses.replace(_cfg(tmp_path), samples=str(samples), out=str(out))
    with exclusive(out, "a running evaluation"), pytest.raises(UserError, match="being written by another"):
        evaluate(cfg)
    unfinished = tmp_path / "attempts.jsonl"
    unfinished.write_text(json.dumps({"index": 0, "attempt": 0, "text": "x", "decoded": False, "final": False}) + "\n")
    with pytest.raises(UserError, match="no final row"):
        evaluate(dataclasses.replace(cfg, samples=str(unfinished)))


# ------------------------------------------------------------------------------------------- 6. trust
class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "code ran"))


def test_a_user_checkpoint_needs_trust_and_the_v1_probe_never_unpickles(tmp_path):
    from plaidpp.evaluation.mlip import _is_fairchem_v1_checkpoint

    with pytest.raises(UserError, match="mlip.trust_checkpoint=true"):
        compose("evaluate", ["samples=-", "out=-", "mlip=fairchem", f"mlip.checkpoint={tmp_path}/x.pt"])
    with pytest.raises(UserError, match="mlip.trust_checkpoint=true"):
        compose("evaluate", ["samples=-", "out=-", "mlip=sevennet", f"mlip.model={tmp_path}/my_7net.pth"])
    compose("evaluate", ["samples=-", "out=-", "mlip=fairchem", f"mlip.checkpoint={tmp_path}/x.pt",
                         "mlip.trust_checkpoint=true"])
    crafted = tmp_path / "crafted.pt"
    marker = tmp_path / "ran.txt"
    crafted.write_bytes(pickle.dumps({"config": {}, "state_dict": _Payload(str(marker))}))
    assert _is_fairchem_v1_checkpoint(str(crafted)) is False
    assert not marker.exists()


def test_fetch_gives_up_on_a_server_that_never_answers(tmp_path):
    from plaidpp.data.mp20 import _download

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    started = time.monotonic()
    with pytest.raises(UserError, match="could not download"):
        _download(f"http://127.0.0.1:{server.getsockname()[1]}/train.csv", tmp_path / "train.csv", timeout_s=0.5)
    assert time.monotonic() - started < 10
    server.close()


# ------------------------------------------------------------------------------------------- 7. metrics
def test_a_metric_whose_input_was_not_computed_is_null_with_the_reason(tmp_path, crystal_text):
    rows = [{"text": crystal_text, "spacegroup": 225}]
    _, summary = score_samples(rows, _cfg(tmp_path, "novelty.enabled=false", "thresholds.metastable=0.2"))
    assert summary["novelty_rate"] is None and summary["sun_rate"] is None and summary["ssun_rate"] is None
    assert summary["not_computed"] == {"novelty_rate": "novelty.enabled=false", "sun_rate": "novelty.enabled=false",
                                       "ssun_rate": "novelty.enabled=false"}
    assert summary["stability_rate"] is not None and summary["uniqueness_rate"] == 1.0
    assert "0.2 eV/atom" in summary["metric_definitions"]["metastability_rate"]  # rendered from the setting
    _, unrelaxed = score_samples(rows, _cfg(tmp_path, "relax.enabled=false", "novelty.enabled=false"))
    assert unrelaxed["stability_rate"] is None and unrelaxed["not_computed"]["stability_rate"] == "relax.enabled=false"
    assert unrelaxed["per_spacegroup"]["225"]["stability_rate"] is None
