"""plaidpp report: builds its page from whichever metrics files exist."""

from __future__ import annotations

import json

from plaidpp.config import compose
from plaidpp.reporting.report import report


def _cfg(tmp_path):
    return compose("report", [f"paths.root={tmp_path}"])


def test_report_with_nothing_to_report_says_so(tmp_path):
    result = report(_cfg(tmp_path))
    assert result["sections"] == []
    assert "Nothing to report yet" in (tmp_path / "reports" / "report.md").read_text()


def test_report_tabulates_rlip_iterations_and_plots_them(tmp_path):
    (tmp_path / "metrics").mkdir()
    iterations = {
        str(i): {"temperature": 0.7 + 0.2 * (i // 2), "eval/sun_rate": 0.01 * i, "eval/stability_rate": 0.05 + 0.01 * i,
                 "reward/metastability_rate": 0.3 + 0.02 * i, "pairs/n": 100 * i}
        for i in range(3)
    }
    (tmp_path / "metrics" / "rlip.json").write_text(
        json.dumps({"reward_mlip": "chgnet", "eval_mlip": "sevennet", "iterations": iterations})
    )
    result = report(_cfg(tmp_path))
    page = (tmp_path / "reports" / "report.md").read_text()
    assert result["sections"] == ["rlip"]
    assert "| 2 | 0.9 |" in page and "2.00 %" in page  # iteration 2: T=0.9, S.U.N. 2 %
    assert (tmp_path / "reports" / "rlip_iterations.png").stat().st_size > 1000


def test_report_compares_variant_runs_last_iteration_against_the_sft_model(tmp_path):
    runs = tmp_path / "metrics" / "rlip_runs"
    runs.mkdir(parents=True)
    for name, sun in (("nontiered", 0.02), ("fixed_ref", 0.04)):
        iterations = {"0": {"eval/sun_rate": 0.01}, "1": {"temperature": 0.7, "eval/sun_rate": sun / 2},
                      "2": {"temperature": 0.9, "eval/sun_rate": sun}}
        (runs / f"{name}.json").write_text(json.dumps({"iterations": iterations}))
    result = report(_cfg(tmp_path))
    page = (tmp_path / "reports" / "report.md").read_text()
    assert result["sections"] == ["rlip_runs"]
    assert "| fixed_ref | 2 | 0.9 |" in page and "4.00 % (1.00 %)" in page
    assert page.index("| fixed_ref |") < page.index("| nontiered |")


def test_a_variant_run_never_overwrites_the_pipelines_rlip_metrics():
    from plaidpp.rlip.layout import Layout

    default = compose("rlip")
    variant = compose("rlip", ["+experiment=rlip_nontiered"])
    assert Layout(default).metrics_path().name == "rlip.json"
    assert Layout(variant).metrics_path().relative_to(default.paths.metrics).as_posix() == "rlip_runs/nontiered.json"
