"""``plaidpp report``: one Markdown page and a few plots from the pipeline's metrics files.

Reads what exists, skips what does not (a report after `prepare` alone is valid):
- ``metrics/prepare.json``                round-trip rates, failures, tokens per crystal (vs the paper's)
- ``metrics/evaluate.json`` + the scored ``structures.parquet`` of the SFT baseline (E_hull histogram,
  per-space-group S.S.U.N.)
- ``metrics/rlip.json``                   per-iteration figures (rates vs iteration, reward vs evaluation MLIP)
- ``metrics/rlip_runs/*.json``            variants and sweep jobs (`plaidpp rlip +experiment=...`, `-m`), compared
Writes ``reports/report.md`` and PNG plots beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from plaidpp.evaluation.metrics import names as rate_names
from plaidpp.io import write_text
from plaidpp.settings.stages import ReportConfig

PAPER_SFT_WYCKOFF = {"validity_structural": 0.998, "validity_composition": 0.9122, "stability_rate": 0.0717,
                     "sun_rate": 0.0358}  # paper Table 1, PLaID++ (non-DPO) Wyckoff, eSEN on full MP-20
PAPER_FLAGSHIP = {"validity_structural": 0.9975, "validity_composition": 0.9734, "stability_rate": 0.2227,
                  "sun_rate": 0.0774}  # paper Table 1, PLaID++ flagship


def _load_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.2f} %"


def prepare_section(metrics: dict[str, Any]) -> list[str]:
    lines = ["## Data and representations", "", "| representation | rows | encoded | round trip | failures | "
             "Qwen2.5 tokens/crystal | paper (full MP-20) |", "|---|---|---|---|---|---|---|"]
    for name, total in metrics["totals"].items():
        lines.append(
            f"| {name} | {total['rows']} | {total['encoded']} | {_pct(total['round_trip_match_rate'])} | "
            f"{total['failures'] or 'none'} | {metrics['tokens_per_crystal_qwen2.5'].get(name)} | "
            f"{metrics['tokens_per_crystal_paper_full_mp20'].get(name)} |"
        )
    return lines + [""]


def evaluation_section(summary: dict[str, Any], title: str) -> list[str]:
    lines = [f"## {title}", "", f"{summary.get('n_requested')} samples requested, "
             f"{summary.get('n_parsed')} parsed. Every rate divides by the samples requested (S.S.U.N. and space-"
             "group accuracy by the conditioned ones); the interval is the 95 % Wilson interval.", "",
             "| metric | ours | 95 % interval | paper SFT Wyckoff | paper flagship |", "|---|---|---|---|---|"]
    for key in rate_names():
        ci = summary.get(f"{key}_ci95")
        interval = "–" if not ci else f"{_pct(ci[0])} – {_pct(ci[1])}"
        lines.append(f"| {key} | {_pct(summary.get(key))} | {interval} | {_pct(PAPER_SFT_WYCKOFF.get(key))} | "
                     f"{_pct(PAPER_FLAGSHIP.get(key))} |")
    if summary.get("hull_warning"):
        lines += ["", f"> **Hull:** {summary['hull_warning']}"]
    return lines + [""]


def rlip_section(metrics: dict[str, Any], out_dir: Path) -> list[str]:
    iterations = metrics.get("iterations", {})
    keys = ["temperature", "rollout/final_parse_rate", "reward/metastability_rate", "pairs/n",
            "eval/validity_structural", "eval/stability_rate", "eval/metastability_rate", "eval/uniqueness_rate",
            "eval/sun_rate", "eval/ssun_rate"]
    lines = ["## RLIP iterations", "", f"Reward MLIP `{metrics.get('reward_mlip')}`, evaluation MLIP "
             f"`{metrics.get('eval_mlip')}`; iteration 0 is the SFT model.", "",
             "| iteration | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for i, row in sorted(iterations.items(), key=lambda kv: int(kv[0])):
        cells = []
        for key in keys:
            value = row.get(key)
            cells.append("–" if value is None else (f"{value:g}" if key in ("temperature", "pairs/n") else _pct(value)))
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    plot = plot_rlip(iterations, out_dir / "rlip_iterations.png")
    if plot:
        lines += ["", f"![RLIP iterations]({plot.name})"]
    vs = metrics.get("vs_sft")
    if vs:
        from plaidpp.evaluation.compare import format_comparison

        lines += ["", f"Iteration {vs['iteration']} against the SFT model (A − B with its 95 % interval; beyond "
                  "noise = the interval excludes 0):", "", "```",
                  format_comparison(vs, f"iteration {vs['iteration']}", "the SFT model (iteration 0)"), "```"]
    return lines + [""]


def runs_section(runs: dict[str, dict[str, Any]]) -> list[str]:
    """One row per RLIP run (default, variants, sweep jobs): its last iteration against iteration 0."""
    keys = ["eval/validity_structural", "eval/metastability_rate", "eval/stability_rate", "eval/sun_rate",
            "eval/ssun_rate", "reward/metastability_rate"]
    lines = ["## RLIP runs compared", "", "Last iteration of each run (iteration 0 = the SFT model, in brackets); "
             "evaluation MLIP except the last column.", "",
             "| run | iterations | T last | " + " | ".join(keys) + " |", "|---" * (len(keys) + 3) + "|"]
    for name, metrics in sorted(runs.items()):
        iterations = metrics.get("iterations", {})
        if not iterations:
            continue
        last = max(iterations, key=int)
        row, base = iterations[last], iterations.get("0", {})
        cells = [f"{_pct(row.get(k))} ({_pct(base.get(k))})" for k in keys]
        temperature = row.get("temperature")
        lines.append(f"| {name} | {last} | {'–' if temperature is None else f'{temperature:g}'} | "
                     + " | ".join(cells) + " |")
    return lines + [""]


def plot_rlip(iterations: dict[str, dict[str, float]], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = ["eval/sun_rate", "eval/stability_rate", "eval/metastability_rate", "reward/metastability_rate",
              "eval/uniqueness_rate", "rollout/final_parse_rate"]
    xs = sorted(int(i) for i in iterations)
    if not xs:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in series:
        ys = [iterations[str(i)].get(key) for i in xs]
        if any(y is not None for y in ys):
            ax.plot(xs, [None if y is None else 100 * y for y in ys], marker="o", label=key)
    ax.set_xlabel("RLIP iteration (0 = SFT)")
    ax.set_ylabel("% of samples requested")
    ax.set_xticks(xs)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_ehull(structures: Path, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    table = pd.read_parquet(structures)
    e_hull = table["e_hull"].dropna() if "e_hull" in table else []
    if len(e_hull) == 0:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(e_hull.clip(-0.5, 1.5), bins=50, color="tab:blue")
    for cut, label in ((0.0, "stable"), (0.1, "metastable (S.S.U.N.)")):
        ax.axvline(cut, color="k", ls="--", lw=0.8)
        ax.text(cut, ax.get_ylim()[1] * 0.9, f" {label}", fontsize=7)
    ax.set_xlabel("E_hull, eV/atom (clipped to [-0.5, 1.5])")
    ax.set_ylabel("generated crystals")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report(cfg: ReportConfig) -> dict[str, Any]:
    metrics_dir = Path(cfg.paths.metrics)
    out_dir = Path(cfg.report.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# plaidpp report", ""]
    written = []
    if (prepare := _load_json(metrics_dir / "prepare.json")) is not None:
        lines += prepare_section(prepare)
        written.append("prepare")
    if (evaluation := _load_json(metrics_dir / "evaluate.json")) is not None:
        lines += evaluation_section(evaluation, "SFT model (evaluation MLIP)")
        structures = Path(str(cfg.report.structures))
        if structures.is_file() and (plot := plot_ehull(structures, out_dir / "ehull_sft.png")):
            lines += [f"![E_hull of SFT samples]({plot.name})", ""]
        written.append("evaluate")
    if (rlip := _load_json(metrics_dir / "rlip.json")) is not None:
        lines += rlip_section(rlip, out_dir)
        written.append("rlip")
    runs = {p.stem: data for p in sorted((metrics_dir / "rlip_runs").glob("*.json"))
            if (data := _load_json(p)) is not None}
    if runs:
        if rlip is not None:
            runs["default"] = rlip
        lines += runs_section(runs)
        written.append("rlip_runs")
    if not written:
        lines.append("Nothing to report yet: run `make run` (or `dvc repro`) first.")
    write_text(out_dir / "report.md", "\n".join(lines) + "\n")
    print(f"wrote {out_dir / 'report.md'} ({', '.join(written) or 'empty'})")
    return {"sections": written, "path": str(out_dir / "report.md")}
