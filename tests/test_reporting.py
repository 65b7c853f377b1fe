"""plaidpp report: builds its page from whatever exists; the HTML is one self-contained file a browser shows."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pandas as pd
import pytest
from pymatgen.core import Structure

from plaidpp.config import PROJECT_ROOT, compose
from plaidpp.evaluation.compare import agreement, compare_tables
from plaidpp.evaluation.evaluate import evaluate
from plaidpp.io import numbers_only
from plaidpp.reporting.report import report
from plaidpp.representation import get
from plaidpp.rlip.record import iteration_metrics
from plaidpp.stats import wilson

from .conftest import few_site_rows, shrunk_overrides

CSV = PROJECT_ROOT / "data/raw/mp20/mp20_partial_merged.csv.gz"


def _cfg(tmp_path, *extra):
    return compose("report", [f"paths.root={tmp_path}", *extra])


def test_report_with_nothing_to_report_says_so(tmp_path):
    result = report(_cfg(tmp_path))
    assert result["sections"] == []
    assert "Nothing to report yet" in (tmp_path / "reports" / "report.md").read_text()
    assert "Nothing to report yet" in (tmp_path / "reports" / "report.html").read_text()


def test_report_compares_variant_runs_last_iteration_against_the_sft_model(tmp_path):
    runs = tmp_path / "metrics" / "rlip_runs"
    runs.mkdir(parents=True)
    for name, sun in (("nontiered", 0.02), ("fixed_ref", 0.04)):
        iterations = {"0": {"eval/sun_rate": 0.01}, "1": {"temperature": 0.7, "eval/sun_rate": sun / 2},
                      "2": {"temperature": 0.9, "eval/sun_rate": sun}}
        (runs / f"{name}.json").write_text(json.dumps({"iterations": iterations}))
    result = report(_cfg(tmp_path))
    page = (tmp_path / "reports" / "report.md").read_text()
    assert "rlip_runs" in result["sections"] and "collapse" not in result["sections"]  # no uniqueness recorded
    assert "| fixed_ref | 2 | 0.9 |" in page and "4.00 % (1.00 %)" in page
    assert page.index("| fixed_ref |") < page.index("| nontiered |")


def test_a_variant_run_never_overwrites_the_pipelines_rlip_metrics():
    from plaidpp.rlip.layout import Layout

    default = compose("rlip")
    variant = compose("rlip", ["+experiment=rlip_nontiered"])
    assert Layout(default).metrics_path().name == "rlip.json"
    assert Layout(variant).metrics_path().relative_to(default.paths.metrics).as_posix() == "rlip_runs/nontiered.json"


@pytest.fixture(scope="module")
def pipeline_outputs(tmp_path_factory, mp20_rows):
    """What a pipeline leaves for the report, made by the real stages' code: real MP-20 test crystals (as the
    generator's text, 3 conditioned on their own group) scored by `plaidpp evaluate` with CHGNet; that folder
    stands for the SFT baseline and for RLIP iterations 0 and 2, whose record `iteration_metrics` and
    `compare_tables` build, with the audit of CHGNet's verdicts against SevenNet-0's on the same crystals;
    training rows as `prepare` writes them."""
    root = tmp_path_factory.mktemp("pipeline")
    enc = get("wyckoff")
    test = mp20_rows[mp20_rows["split"] == "test"].sample(60, random_state=3)
    small = few_site_rows(test, 5)
    rows = [{"index": k, "text": enc.encode(Structure.from_str(cif, fmt="cif")), "repr": "wyckoff",
             "spacegroup": int(sg) if k < 3 else None, "prompt": f"p{k}"}
            for k, (cif, sg) in enumerate(zip(small["cif"], small["spacegroup.number"], strict=True))]
    samples = root / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scored = root / "data" / "scored" / "sft"
    metrics_file = root / "metrics" / "evaluate.json"
    def score(out, mlip, *extra):
        return evaluate(compose("evaluate", shrunk_overrides("evaluate", root, [
            f"samples={samples}", f"out={out}", f"mlip={mlip}", f"novelty.reference=[{CSV}]", "progress=false",
            "relax.steps=40", "relax.fmax=0.1", "hull=mp20_fallback", *extra])))

    summary = score(scored, "chgnet", f"metrics_file={metrics_file}")
    assert summary["n_sun"] >= 1  # real MP crystals, relaxed: some sit on the hull
    score(root / "audit", "sevennet")
    audit = {"reward": {"metastability_rate": 0.5}, **agreement(
        pd.read_parquet(scored / "structures.parquet"), pd.read_parquet(root / "audit" / "structures.parquet"), 0.0, 0.1)}
    assert audit["n"] >= 3 and sum(audit["confusion"].values()) == audit["n"]
    rlip_dir = root / "data" / "rlip" / "default"
    for i in (0, 2):
        shutil.copytree(scored, rlip_dir / f"iter_{i}" / "eval")
    table = pd.read_parquet(scored / "structures.parquet")
    iterations = {str(i): iteration_metrics({"evaluate": summary, "audit": audit}, None if i == 0 else 0.7)
                  for i in (0, 1, 2)}
    record = {"run": "default", "reward_mlip": "chgnet", "eval_mlip": "chgnet", "iterations": iterations,
              "vs_sft": {"iteration": 2, **compare_tables(table, table)}}
    (rlip_dir / "summary.json").write_text(json.dumps(record))
    processed = root / "data" / "processed" / "wyckoff"
    processed.mkdir(parents=True)
    train = mp20_rows[mp20_rows["split"] == "train"].head(300)
    (processed / "train.jsonl").write_text("".join(json.dumps({"spacegroup": int(g)}) + "\n"
                                                   for g in train["spacegroup.number"]))
    return root, summary, metrics_file


def test_evaluate_metrics_file_holds_numbers_only(pipeline_outputs):
    """`dvc metrics show` must read as a table: no strings, no per-group breakdown, intervals as low/high."""
    _, summary, metrics_file = pipeline_outputs
    metrics = json.loads(metrics_file.read_text())
    assert numbers_only(metrics) == metrics
    assert "per_spacegroup" not in metrics and "hull_description" not in metrics
    assert metrics["sun_rate"] == summary["sun_rate"]
    assert [metrics["sun_rate_ci95"]["low"], metrics["sun_rate_ci95"]["high"]] == summary["sun_rate_ci95"]


def test_report_has_every_figure_of_the_paper_with_intervals(pipeline_outputs):
    root, summary, _ = pipeline_outputs
    result = report(_cfg(root))
    assert {"models", "evaluate", "rlip", "collapse", "groups", "distributions", "crystals"} <= set(result["sections"])
    page = (root / "reports" / "report.md").read_text()
    assert "Is the reward being hacked?" in page and "No sign of reward hacking" in page  # same figures each iteration
    low, high = (100 * v for v in summary["sun_rate_ci95"])
    assert f"{100 * summary['sun_rate']:.1f} % [{low:.1f}, {high:.1f}]" in page  # Table 1 row with its interval
    for figure in ("rlip_iterations.png", "collapse.png", "per_group.png", "spacegroups.png", "ehull.png"):
        assert (root / "reports" / figure).stat().st_size > 5000, figure
    pictures = sorted((root / "reports" / "crystals").glob("*.png"))
    cifs = sorted((root / "reports" / "crystals").glob("*.cif"))
    assert len(pictures) == len(cifs) == 3 * min(summary["n_sun"], 8)  # SFT baseline, iterations 0 and 2
    assert Structure.from_str(cifs[0].read_text(), fmt="cif").is_ordered  # a CIF pymatgen reads back
    html = (root / "reports" / "report.html").read_text()
    assert not re.search(r'(src|href)="(?!data:)', html)  # self-contained: nothing points at another file
    assert html.count("<img") == 5 + len(pictures) and html.count('href="data:chemical/x-cif') == len(cifs)


def test_agreement_counts_tiers_kappa_and_rank_correlation():
    """Two potentials' E_hull (eV/atom) for the same five crystals; one failed to relax under the second."""
    judge = pd.DataFrame({"index": range(5), "e_hull": [-0.02, 0.05, 0.3, 0.08, 0.5], "relax_ok": [True] * 5})
    other = pd.DataFrame({"index": range(5), "e_hull": [-0.01, 0.12, 0.4, 0.02, float("nan")],
                          "relax_ok": [True, True, True, True, False]})
    result = agreement(judge, other, stable=0.0, metastable=0.1)
    assert result["n"] == 4  # the crystal the second potential could not relax is left out
    # tiers: judge stable, meta, unstable, meta; other stable, unstable, unstable, meta -> 3 of 4 agree
    assert result["tier_agreement"] == 0.75 and result["confusion"]["metastable->unstable"] == 1
    # chance agreement from the tier shares: (1/4)(1/4) + (2/4)(1/4) + (1/4)(2/4) = 5/16; kappa = (12/16 - 5/16) / (11/16)
    assert result["kappa"] == pytest.approx(7 / 11, abs=1e-6)
    assert result["spearman_e_hull"] == pytest.approx(0.8)  # ranks 1 2 4 3 against 1 3 4 2: 1 - 6 * 2 / (4 * 15)


CHECK = """<script>window.addEventListener('load', () => {
  const images = [...document.images], tables = [...document.querySelectorAll('table')];
  const out = document.createElement('pre'); out.id = 'check';
  out.textContent = JSON.stringify({images: images.length,
    loaded: images.filter(i => i.complete && i.naturalWidth > 0).length, tables: tables.length,
    rendered: tables.filter(t => t.getBoundingClientRect().height > 0 && t.rows.length > 1).length});
  document.body.appendChild(out);
});</script>"""


def test_report_html_renders_in_headless_chromium(pipeline_outputs, tmp_path):
    """Every image decodes and every table has rows on screen in a real browser (Debian's chromium)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    root, _, _ = pipeline_outputs
    report(_cfg(root))
    page = tmp_path / "report.html"  # a copy away from the figures: only what is embedded can load
    page.write_text((root / "reports" / "report.html").read_text().replace("</body>", CHECK + "</body>"))
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="check">(.*?)</pre>', dom)
    assert found, dom[-2000:]
    check = json.loads(found.group(1))
    assert check["images"] >= 6 and check["loaded"] == check["images"], check
    assert check["tables"] >= 4 and check["rendered"] == check["tables"], check


def test_comparison_text_reads_records_from_before_the_difference_interval_was_renamed():
    """RLIP summaries written before 50ecb51 name the difference's interval `ci95`: the report still prints
    them (a `make rlip-reference` after upgrading re-reports the default run's older record)."""
    from plaidpp.evaluation.compare import format_comparison

    entry = {"a": 0.2, "b": 0.1, "difference": 0.1, "p_value": 0.04, "larger_than_noise": True}
    for key in ("difference_ci95", "ci95"):
        text = format_comparison({"paired": True, "rates": {"sun_rate": {**entry, key: [0.01, 0.19]}}}, "A", "B")
        assert "[  1.00 %,  19.00 %]" in text and "yes" in text


def test_reward_audit_warns_when_agreement_falls_beyond_the_noise_as_the_reward_rises():
    """The reference run's audit: 63 of 72 crystals in the same tier at pi_0, 45 of 66 at pi_4 (Fisher p =
    0.007, though the two Wilson intervals touch), while the reward's metastable share on the rollouts rose; an
    equal agreement (63 of 72 twice) gives no warning."""
    from plaidpp.reporting.report import audit_section

    def row(agree, n, reward=None):
        low, high = wilson(agree, n)
        return {"audit/n": n, "audit/tier_agreement": agree / n, "audit/tier_agreement_ci95_low": low,
                "audit/tier_agreement_ci95_high": high, "reward/metastability_rate": reward}

    falling = audit_section({"0": row(63, 72), "1": row(60, 70, 0.16), "4": row(45, 66, 0.57)}, "run `reference`")
    assert "run `reference`" in falling[0] and any("**Warning:**" in line and "Fisher p = 0.00" in line
                                                   for line in falling)
    steady = audit_section({"0": row(63, 72), "1": row(63, 72, 0.16), "4": row(63, 72, 0.57)})
    assert any("No sign of reward hacking" in line for line in steady)
