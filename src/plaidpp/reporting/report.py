"""``plaidpp report``: ``reports/report.md`` and ``reports/report.html`` (one self-contained file: figures and
CIFs embedded, opens offline) from whatever the pipeline has produced; a report after `prepare` alone is valid.

Reads (each optional):
- ``metrics/prepare.json``                     round trip and tokens per crystal of each representation
- ``data/scored/sft/{summary.json, structures.parquet}``   the SFT baseline (``report.structures``)
- ``data/rlip/default/summary.json``            the RLIP run's record (``report.rlip_summary``) and, beside it,
  ``iter_<i>/eval/{summary.json, structures.parquet}``  every evaluated iteration
- ``metrics/rlip_runs/*.json``                  variants and sweep jobs, compared with the default run
- ``data/processed/<repr>/{train,val}.jsonl``   the training crystals' space groups (``report.training_rows``)

Sections follow the paper's figures: Table 1 (every model with intervals), Fig. 3 (rates per iteration with
interval bands), Fig. 4 (per target group, SFT against the last iteration), Fig. 8 (space-group distributions),
E_hull distributions, the collapse test (uniqueness and novelty per iteration and run), and pictures of the
best S.U.N. crystals with their CIFs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from plaidpp.evaluation.metrics import names as rate_names
from plaidpp.io import write_text
from plaidpp.reporting import figures
from plaidpp.reporting.calibrated import expected_rate, load_confusion, tier_counts
from plaidpp.reporting.html import render
from plaidpp.settings.stages import ReportConfig

PAPER_SFT_WYCKOFF = {"validity_structural": 0.998, "validity_composition": 0.9122, "stability_rate": 0.0717,
                     "sun_rate": 0.0358}  # paper Table 1, PLaID++ (non-DPO) Wyckoff, eSEN on full MP-20
PAPER_FLAGSHIP = {"validity_structural": 0.9975, "validity_composition": 0.9734, "stability_rate": 0.2227,
                  "sun_rate": 0.0774}  # paper Table 1, PLaID++ flagship
TABLE1 = ("validity_structural", "validity_composition", "stability_rate", "metastability_rate", "uniqueness_rate",
          "novelty_rate", "sun_rate", "ssun_rate")
BANDS = {"eval/sun_rate": "S.U.N.", "eval/stability_rate": "stable (E_hull ≤ 0)",
         "eval/metastability_rate": "metastable (E_hull ≤ 0.1)"}
COLLAPSE = {"eval/uniqueness_rate": "unique", "eval/novelty_rate": "novel"}


def _load_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.2f} %"


def _rate(value: Any, ci: Any) -> str:
    """``x % [low, high]``; ``ci`` a [low, high] pair or None."""
    if value is None:
        return "–"
    return _pct(value) if not ci else f"{100 * value:.1f} % [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _flat_ci(row: dict[str, Any], key: str) -> list[float] | None:
    low, high = row.get(f"{key}_ci95_low"), row.get(f"{key}_ci95_high")
    return None if low is None or high is None else [low, high]


class Sources:
    """Everything the report reads, loaded once."""

    def __init__(self, cfg: ReportConfig) -> None:
        metrics = Path(cfg.paths.metrics)
        self.prepare = _load_json(metrics / "prepare.json")
        self.structures = Path(str(cfg.report.structures))
        self.sft = _load_json(self.structures.parent / "summary.json")
        self.rlip_dir = Path(str(cfg.report.rlip_summary)).parent
        self.rlip = _load_json(Path(str(cfg.report.rlip_summary)))
        self.runs = {p.stem: data for p in sorted((metrics / "rlip_runs").glob("*.json"))
                     if (data := _load_json(p)) is not None}
        self.training_rows = Path(str(cfg.report.training_rows))

    def iterations(self) -> dict[str, dict[str, float]]:
        return (self.rlip or {}).get("iterations", {})

    def evaluated(self) -> list[int]:
        """RLIP iterations whose evaluation folder exists, in order."""
        return sorted(int(i) for i in self.iterations() if (self.rlip_dir / f"iter_{i}" / "eval").is_dir())

    def iteration_eval(self, i: int) -> tuple[dict[str, Any] | None, pd.DataFrame | None]:
        folder = self.rlip_dir / f"iter_{i}" / "eval"
        table = folder / "structures.parquet"
        return _load_json(folder / "summary.json"), pd.read_parquet(table) if table.is_file() else None

    def models(self) -> dict[str, tuple[dict[str, Any] | None, pd.DataFrame | None]]:
        """Label -> (summary, per-structure table) of every evaluated model: the SFT baseline, RLIP iteration 0
        (the same SFT model, RLIP's evaluation prompts) and the last RLIP iteration."""
        out = {}
        if self.sft is not None:
            out["SFT baseline"] = (self.sft, pd.read_parquet(self.structures) if self.structures.is_file() else None)
        evaluated = self.evaluated()
        for i in dict.fromkeys([evaluated[0], evaluated[-1]] if evaluated else []):
            out[f"RLIP iteration {i}"] = self.iteration_eval(i)
        return out

    def training_spacegroups(self) -> pd.Series | None:
        folders = sorted(p for p in self.training_rows.glob("*") if (p / "train.jsonl").is_file())
        if not folders:
            return None
        numbers = []
        for split in ("train.jsonl", "val.jsonl"):
            path = folders[0] / split
            if path.is_file():
                numbers += [json.loads(line)["spacegroup"] for line in path.read_text().splitlines() if line.strip()]
        return pd.Series(numbers, dtype="Int64")


def prepare_section(metrics: dict[str, Any]) -> list[str]:
    lines = ["## Data and representations", "", "| representation | rows | encoded | round trip | failures | "
             "Qwen2.5 tokens/crystal | paper (full MP-20) |", "|---|---|---|---|---|---|---|"]
    for name, total in metrics["totals"].items():
        lines.append(
            f"| {name} | {total['rows']} | {total['encoded']} | {_pct(total['round_trip_match_rate'])} | "
            f"{total.get('failures') or 'none'} | {metrics.get('tokens_per_crystal_qwen2.5', {}).get(name)} | "
            f"{metrics.get('tokens_per_crystal_paper_full_mp20', {}).get(name)} |"
        )
    return lines + [""]


def table1_section(sources: Sources) -> list[str]:
    """Every model in the shape of the paper's Table 1, each rate with its 95 % interval."""
    rows: list[tuple[str, int | None, dict[str, Any]]] = []
    for label, (summary, _) in sources.models().items():
        if summary is not None:
            rows.append((label, summary.get("n_requested"),
                         {k: (summary.get(k), summary.get(f"{k}_ci95")) for k in TABLE1}))
    for name, run in sorted(sources.runs.items()):
        iterations = run.get("iterations", {})
        if iterations:
            last = max(iterations, key=int)
            row = iterations[last]
            rows.append((f"run `{name}`, iteration {last}", row.get("eval/n_requested"),
                         {k: (row.get(f"eval/{k}"), _flat_ci(row, f"eval/{k}")) for k in TABLE1}))
    if not rows:
        return []
    lines = ["## Models compared (the shape of the paper's Table 1)", "",
             "Rates of the samples requested (S.S.U.N. of the space-group-conditioned ones) with 95 % Wilson "
             "intervals, judged by the evaluation potential.", "",
             "| model | n | " + " | ".join(TABLE1) + " |", "|---" * (len(TABLE1) + 2) + "|"]
    for label, n, figures_ in rows:
        n_text = "–" if n is None else f"{int(n)}"
        lines.append(f"| {label} | {n_text} | " + " | ".join(_rate(*figures_[k]) for k in TABLE1) + " |")
    for label, paper in (("paper: PLaID++ SFT, Wyckoff", PAPER_SFT_WYCKOFF),
                         ("paper: PLaID++ flagship", PAPER_FLAGSHIP)):
        lines.append(f"| {label} | 10,000+ | " + " | ".join(_pct(paper.get(k)) if k in paper else "–" for k in TABLE1)
                     + " |")
    return lines + [""]



def paper_judge_section(models: dict[str, tuple[dict | None, pd.DataFrame | None]], record: str | Path) -> list[str]:
    """The report's "what the paper's judge would count": beside each model's stability and S.U.N., the rates
    eSEN would be expected to give, and the judge's measured bias, or a line saying why there is none."""
    lines = ["## What the paper's judge would count", "",
             "The paper's rates are judged by eSEN-30M-OAM; these are judged by the evaluation potential, which "
             "disagrees with eSEN on generated crystals (`benchmarks/judge_calibration.py`, docs/evaluation.md). "
             "The expected eSEN rate weighs each relaxed crystal by the share of the calibration crystals in its "
             "tier that eSEN calls stable (S.U.N.: the relaxed, novel crystals first of their match class); the "
             "interval carries the run's sampling and the calibration's counts. It assumes the judge errs on this "
             "model's crystals as on the PLaID++ authors' 7B crystals it was calibrated on.", "",
             "| model | judge | n | stable (judge) | stable (eSEN, expected) | S.U.N. (judge) | S.U.N. (eSEN, "
             "expected) | calibration: crystals, judge − eSEN median E_hull, stable judge / eSEN |",
             "|---|---|---|---|---|---|---|---|"]
    header = len(lines)
    for label, (summary, table) in models.items():
        if summary is None or table is None:
            continue
        judge, relax = summary.get("mlip"), summary.get("relax_settings")
        row = load_confusion(record, judge, relax)
        if row is None:
            lines.append(f"| {label} | `{judge}` | {summary.get('n_requested')} | – | no calibration of this judge "
                         f"and relaxation in `{record}` | – | – | – |")
            continue
        n, cuts = int(summary["n_requested"]), row["cuts"]
        relaxed = table[table["relax_ok"].fillna(False).astype(bool)]
        eligible = relaxed[relaxed["is_novel"].fillna(False).astype(bool) & relaxed["is_unique"].fillna(False)
                           .astype(bool)]
        stable = expected_rate(tier_counts(relaxed["e_hull"], cuts), n, row["confusion"])
        sun = expected_rate(tier_counts(eligible["e_hull"], cuts), n, row["confusion"])
        own = {k: (summary.get(k), summary.get(f"{k}_ci95")) for k in ("stability_rate", "sun_rate")}
        lines.append(
            f"| {label} | `{judge}` | {n} | {_rate(*own['stability_rate'])} | {_rate(stable['estimate'], stable['ci95'])} | "
            f"{_rate(*own['sun_rate'])} | {_rate(sun['estimate'], sun['ci95'])} | {row['n_compared']}, "
            f"{1000 * row['e_hull_median_bias_eV']:+.0f} meV/atom, {row['stable']['n_judge']} / "
            f"{row['stable']['n_esen']} |")
    return lines + [""] if len(lines) > header else []


def evaluation_section(summary: dict[str, Any], title: str) -> list[str]:
    lines = [f"## {title}", "", f"{summary.get('n_requested')} samples requested, "
             f"{summary.get('n_parsed')} parsed, judged by `{summary.get('mlip')}`. Every rate divides by the "
             "samples requested (S.S.U.N. and space-group accuracy by the conditioned ones); the interval is the "
             "95 % Wilson interval.", "",
             "| metric | ours | 95 % interval | paper SFT Wyckoff | paper flagship |", "|---|---|---|---|---|"]
    for key in rate_names():
        ci = summary.get(f"{key}_ci95")
        interval = "–" if not ci else f"{_pct(ci[0])} – {_pct(ci[1])}"
        lines.append(f"| {key} | {_pct(summary.get(key))} | {interval} | {_pct(PAPER_SFT_WYCKOFF.get(key))} | "
                     f"{_pct(PAPER_FLAGSHIP.get(key))} |")
    if summary.get("hull_warning"):
        lines += ["", f"> **Hull:** {summary['hull_warning']}"]
    return lines + [""]


def rlip_section(record: dict[str, Any], runs: dict[str, dict[str, Any]], out_dir: Path) -> list[str]:
    iterations = record.get("iterations", {})
    keys = ["temperature", "rollout/final_parse_rate", "reward/metastability_rate", "pairs/n",
            "eval/validity_structural", "eval/stability_rate", "eval/metastability_rate", "eval/uniqueness_rate",
            "eval/sun_rate", "eval/ssun_rate"]
    lines = ["## RLIP iterations", "", f"Reward MLIP `{record.get('reward_mlip')}`, evaluation MLIP "
             f"`{record.get('eval_mlip')}`; iteration 0 is the SFT model. Evaluation rates with their 95 % "
             "interval.", "", "| iteration | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for i, row in sorted(iterations.items(), key=lambda kv: int(kv[0])):
        cells = []
        for key in keys:
            value = row.get(key)
            if key in ("temperature", "pairs/n"):
                cells.append("–" if value is None else f"{value:g}")
            else:
                cells.append(_rate(value, _flat_ci(row, key)) if key.startswith("eval/") else _pct(value))
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    all_runs = {"default": iterations, **{name: r.get("iterations", {}) for name, r in runs.items()}}
    if plot := figures.iteration_bands(all_runs, BANDS, out_dir / "rlip_iterations.png"):
        lines += ["", "Per iteration, each run, with the 95 % interval as a band (the paper's Fig. 3):", "",
                  f"![RLIP iterations]({plot.name})"]
    lines += ["", *audit_section(iterations)]
    for name, run in runs.items():  # every run that audited its reward (e.g. the reference run)
        lines += audit_section(run.get("iterations", {}), f"run `{name}`")
    vs = record.get("vs_sft")
    if vs:
        from plaidpp.evaluation.compare import format_comparison

        lines += ["", f"Iteration {vs['iteration']} against the SFT model (A − B with its 95 % interval; beyond "
                  "noise = the interval excludes 0):", "", "```",
                  format_comparison(vs, f"iteration {vs['iteration']}", "the SFT model (iteration 0)"), "```"]
        for task, result in (vs.get("by_task") or {}).items():  # the paper states its S.U.N. gains per task
            lines += ["", f"The same, {task} prompts only:", "", "```",
                      format_comparison(result, f"iteration {vs['iteration']}", "the SFT model"), "```"]
    return lines + [""]


def audit_section(iterations: dict[str, dict[str, float]], run: str = "the default run") -> list[str]:
    """Reward against evaluation potential on the same evaluation crystals, per iteration, and a verdict: the
    reward rising on the rollouts while the two potentials' tier agreement falls beyond its noise is the sign
    of a policy learning the reward potential's errors. "Beyond its noise": the difference of the first and last
    iteration's agreement (different crystals: ``stats.difference`` unpaired, bootstrap interval and Fisher's
    test) has an interval that excludes 0. Comparing the two Wilson intervals for overlap, as this did before,
    missed the reference run's 87.5 % of 72 -> 68.2 % of 66 (Fisher p = 0.007): the intervals touched."""
    from plaidpp.stats import difference

    rows = {int(i): row for i, row in iterations.items() if row.get("audit/n")}
    if not rows:
        return []
    lines = [f"### Is the reward being hacked? ({run})", "", "The evaluation samples scored again with the reward potential: "
             "crystals both potentials placed on the hull, how often they give the same tier (stable / metastable "
             "/ unstable) with its 95 % interval, and the Spearman correlation of their E_hull.", "",
             "| iteration | crystals | same tier | Spearman ρ (E_hull) | reward potential: metastable | evaluation "
             "potential: metastable | reward on the rollouts: metastable |", "|---|---|---|---|---|---|---|"]
    for i, row in sorted(rows.items()):
        rho = row.get("audit/spearman_e_hull")
        same_tier = _rate(row["audit/tier_agreement"], _flat_ci(row, "audit/tier_agreement"))
        lines.append(f"| {i} | {int(row['audit/n'])} | {same_tier} | {'–' if rho is None else f'{rho:.3f}'} | "
                     f"{_pct(row.get('audit/reward_metastability_rate'))} | {_pct(row.get('eval/metastability_rate'))} | "
                     f"{_pct(row.get('reward/metastability_rate'))} |")
    first, last = min(rows), max(rows)
    if first == last:
        return lines + [""]
    a, b = rows[first], rows[last]
    on_rollouts = [r for i in sorted(int(k) for k in iterations)
                   if (r := iterations[str(i)].get("reward/metastability_rate")) is not None]
    reward_up = len(on_rollouts) >= 2 and on_rollouts[-1] > on_rollouts[0]

    def outcomes(row: dict[str, float]) -> list[int]:  # one 0/1 per audited crystal: the tiers agree
        n = int(row["audit/n"])
        agree = round(row["audit/tier_agreement"] * n)
        return [1] * agree + [0] * (n - agree)

    change = difference(outcomes(b), outcomes(a), paired=False)
    fell = change["difference"] < 0 and change["larger_than_noise"]
    low, high = (100 * v for v in change["difference_ci95"])
    measured = (f"{100 * change['difference']:+.1f} points [{low:+.1f}, {high:+.1f}], Fisher p = "
                f"{change['p_value']:.3g}")
    if fell and reward_up:
        verdict = (f"**Warning:** from iteration {first} to {last} the reward rose on the rollouts while the two "
                   f"potentials' tier agreement fell beyond its noise ({measured}): the policy may be learning the "
                   "reward potential's errors, or moving its crystals to where the two potentials disagree most.")
    elif fell:
        verdict = (f"Tier agreement fell beyond its noise from iteration {first} to {last} ({measured}), without "
                   "a rising reward.")
    else:
        verdict = (f"No sign of reward hacking: tier agreement at iteration {last} is within the noise of iteration "
                   f"{first}, or higher ({measured}).")
    return lines + ["", f"> {verdict}", ""]


def collapse_section(runs: dict[str, dict[str, dict[str, float]]], out_dir: Path) -> list[str]:
    """Uniqueness and novelty per iteration for every run: the mode-collapse test (no relaxation needed)."""
    plot = figures.iteration_bands(runs, COLLAPSE, out_dir / "collapse.png")
    if plot is None:
        return []
    return ["## Diversity per iteration (the collapse test)", "",
            "A constant temperature should lose uniqueness after a few iterations where the rising schedule "
            "does not (the paper's section 5); compare the runs' schedules in the runs table.", "",
            f"![uniqueness and novelty per iteration]({plot.name})", ""]


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


def groups_section(models: dict[str, tuple[dict | None, pd.DataFrame | None]], out_dir: Path) -> list[str]:
    """Per target space group: S.S.U.N. and space-group accuracy of each model (the paper's Fig. 4)."""
    summaries = {label: s for label, (s, _) in models.items() if s and s.get("per_spacegroup")}
    plot = figures.per_group(summaries, out_dir / "per_group.png")
    if plot is None:
        return []
    groups = sorted({int(g) for s in summaries.values() for g in s["per_spacegroup"]})
    lines = ["## Per target space group (the paper's Fig. 4)", "", f"![per group]({plot.name})", "",
             "| group | " + " | ".join(f"{label}: S.S.U.N. | {label}: group after relaxation" for label in summaries)
             + " |", "|---" * (2 * len(summaries) + 1) + "|"]
    for g in groups:
        cells = []
        for summary in summaries.values():
            row = summary["per_spacegroup"].get(str(g), {})
            cells += [_rate(row.get("ssun_rate"), row.get("ssun_rate_ci95")),
                      _rate(row.get("spacegroup_accuracy"), row.get("spacegroup_accuracy_ci95"))]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    return lines + [""]


def distributions_section(sources: Sources, models: dict[str, tuple[dict | None, pd.DataFrame | None]],
                          out_dir: Path) -> list[str]:
    tables = {label: t for label, (_, t) in models.items() if t is not None}
    lines = []
    groups = {}
    if (training := sources.training_spacegroups()) is not None:
        groups["training set"] = training
    groups.update({label: t["spacegroup_achieved"] for label, t in tables.items() if "spacegroup_achieved" in t})
    if len(groups) > 0 and (plot := figures.spacegroup_distribution(groups, out_dir / "spacegroups.png")):
        lines += ["## Space groups generated (the paper's Fig. 8)", "",
                  "Training crystals by their MP-20 space group; generated crystals by the pyxtal space group of "
                  "the relaxed crystal (0.01 Å).", "", f"![space-group distributions]({plot.name})", ""]
    if plot := figures.ehull_distributions(tables, out_dir / "ehull.png"):
        lines += ["## E_hull of the relaxed crystals", "", f"![E_hull distributions]({plot.name})", ""]
    return lines


def gallery_section(models: dict[str, tuple[dict | None, pd.DataFrame | None]], out_dir: Path, top: int) -> list[str]:
    """The ``top`` lowest-E_hull S.U.N. crystals of each model: a picture, formula, group, E_hull, its CIF."""
    lines = []
    folder = out_dir / "crystals"
    for label, (summary, table) in models.items():
        if table is None or "is_sun" not in table or "cif_relaxed" not in table:
            continue
        best = table[table["is_sun"].fillna(False).astype(bool)].sort_values("e_hull").head(top)
        if best.empty:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        slug = label.lower().replace(" ", "_")
        lines += [f"### {label}: {len(best)} of {int(table['is_sun'].fillna(False).sum())} S.U.N. crystals", "",
                  '<div class="gallery">', ""]
        for _, row in best.iterrows():
            group = row.get("spacegroup_achieved")
            title = f"{row['formula']}, group {group}, E_hull {row['e_hull']:.3f} eV/atom"
            stem = f"{slug}_{int(row['index'])}_{row['formula']}"
            write_text(folder / f"{stem}.cif", row["cif_relaxed"])
            picture = figures.crystal_picture(row["cif_relaxed"], title, folder / f"{stem}.png")
            lines += [f"![{title}](crystals/{picture.name})  ", f"[{stem}.cif](crystals/{stem}.cif)", ""]
        lines += ["</div>", ""]
    if not lines:
        return []
    return ["## The best S.U.N. crystals", "", "Relaxed by the evaluation potential; lowest E_hull first. The CIFs "
            "are the relaxed cells the energies belong to.", "", *lines]


def report(cfg: ReportConfig) -> dict[str, Any]:
    out_dir = Path(cfg.report.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = Sources(cfg)
    models = sources.models()
    lines = ["# plaidpp report", ""]
    written = []
    if sources.prepare is not None:
        lines += prepare_section(sources.prepare)
        written.append("prepare")
    if table := table1_section(sources):
        lines += table
        written.append("models")
    if judged := paper_judge_section(models, cfg.report.judge_calibration):
        lines += judged
        written.append("paper_judge")
    if sources.sft is not None:
        lines += evaluation_section(sources.sft, "SFT baseline (evaluation MLIP)")
        written.append("evaluate")
    if sources.rlip is not None:
        lines += rlip_section(sources.rlip, sources.runs, out_dir)
        written.append("rlip")
    all_runs = {**({"default": sources.iterations()} if sources.rlip else {}),
                **{name: r.get("iterations", {}) for name, r in sources.runs.items()}}
    if collapse := collapse_section(all_runs, out_dir):
        lines += collapse
        written.append("collapse")
    if sources.runs:
        lines += runs_section({**sources.runs, **({"default": sources.rlip} if sources.rlip else {})})
        written.append("rlip_runs")
    if groups := groups_section(models, out_dir):
        lines += groups
        written.append("groups")
    if distributions := distributions_section(sources, models, out_dir):
        lines += distributions
        written.append("distributions")
    if gallery := gallery_section(models, out_dir, cfg.report.top_crystals):
        lines += gallery
        written.append("crystals")
    if not written:
        lines.append("Nothing to report yet: run `make run` (or `dvc repro`) first.")
    markdown = "\n".join(lines) + "\n"
    write_text(out_dir / "report.md", markdown)
    write_text(out_dir / "report.html", render(markdown, out_dir, "plaidpp report"))
    print(f"wrote {out_dir / 'report.md'} and report.html ({', '.join(written) or 'empty'})")
    return {"sections": written, "path": str(out_dir / "report.md"), "html": str(out_dir / "report.html")}
