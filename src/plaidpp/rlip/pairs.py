"""Preference pairs from scored samples (PLaID++ section 4.2 and appendix 7.2).

Input: the evaluation package's scored table (one row per requested sample; columns ``text``, ``prompt``,
``e_hull`` in eV/atom, ``parse_ok``, ``valid_structure``, ``relax_ok``, ``spacegroup_requested``,
``spacegroup_achieved``, ``is_novel``; see ``contracts.md``). Output: pairs ``(prompt, chosen, rejected, kind)``
where chosen and rejected answer the *same* prompt, as DPO requires.

Every sample falls in one tier by its reward-MLIP energy above hull:

- ``stable``      E_hull <= ``stable_max`` (0 eV/atom);
- ``metastable``  ``stable_max`` < E_hull <= ``metastable_max`` (0.08 eV/atom, the paper's reward threshold);
- ``unstable``    E_hull > ``metastable_max``;
- ``failed``      no usable energy: text that did not parse, a structurally invalid crystal, a failed
  relaxation or a NaN E_hull. With ``failed: unstable`` (default) these join the unstable tier, but only ever
  as *rejected* completions: a model that writes undecodable or overlapping crystals should learn not to,
  and the reward MLIP's verdict on them is "worst". ``failed: drop`` leaves them out (the paper resamples
  until a CIF parses, so it never meets unparsed text; its unstable tier holds only relaxed crystals).

Pair kinds (``kinds`` selects which are built):

- ``stability_tiered`` (unconditional prompt): per stable crystal one (stable, metastable) pair and
  ``ratio`` (paper: 2) (stable, unstable) pairs; per metastable crystal ``ratio`` (metastable, unstable) pairs.
- ``stability`` (the non-tiered ablation, unconditional prompt): per stable-or-metastable crystal ``ratio``
  (accepted, unstable) pairs.
- ``novelty`` (unconditional prompt): per stable & novel crystal ``novelty_per_accept`` (stable & novel,
  stable & not novel) pairs.
- ``spacegroup`` and ``spacegroup_stability`` (each conditioned group's own prompt): among stable/metastable
  crystals, per crystal of the right group ``ratio`` (right, wrong group) pairs; and per stable/metastable
  crystal ``ratio`` (stable/metastable, unstable) pairs. ``ratio`` is the paper's accept:reject ratio (1:2;
  it reports 1:1 and 1:10 as worse).

Rejected partners are drawn without replacement for one accepted crystal, independently across accepted
crystals, from a ``random.Random`` seeded by (seed, kind, prompt group), so the set is a pure function of the
table and the seed. When a pool is smaller than asked, every member is used and the shortfall is counted.
The merged set is deduplicated on (prompt, chosen, rejected) in the kind order above, and pairs whose chosen
and rejected texts are identical are dropped (they carry no preference); both are counted.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from plaidpp.errors import UserError
from plaidpp.io import atomic_write, write_metrics
from plaidpp.settings.rlip import PAIR_KINDS as KINDS
from plaidpp.settings.rlip import PairsSettings
from plaidpp.settings.stages import PairsStageConfig

TIERS = ("stable", "metastable", "unstable", "failed")


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str
    rejected: str
    kind: str
    group: str  # "unconditional" or "sg<N>"
    chosen_id: str
    rejected_id: str
    chosen_e_hull: float | None
    rejected_e_hull: float | None


@dataclass
class PairsResult:
    pairs: list[Pair]
    counts: dict[str, int]  # pairs per kind, after deduplication
    tiers: dict[str, dict[str, int]]  # group -> tier -> samples
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> pairs or draws not made

    def summary(self) -> dict[str, Any]:
        return {
            "n_pairs": len(self.pairs),
            "pairs_by_kind": dict(self.counts),
            "tiers": self.tiers,
            "dropped": dict(self.dropped),
        }


def _flag(row: pd.Series, column: str, default: bool = True) -> bool:
    value = row.get(column, default)
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return default
    return bool(value)


def tier_of(row: pd.Series, cfg: PairsSettings) -> str:
    """The row's reward tier; ``failed`` when there is no trustworthy energy for the text as written."""
    e_hull = row.get("e_hull")
    usable = (
        _flag(row, "parse_ok", False)
        and _flag(row, "valid_structure")
        and _flag(row, "relax_ok")
        and e_hull is not None
        and e_hull is not pd.NA
        and not math.isnan(float(e_hull))
    )
    if not usable:
        return "failed"
    if float(e_hull) <= cfg.stable_max:
        return "stable"
    if float(e_hull) <= cfg.metastable_max:
        return "metastable"
    return "unstable"


@dataclass(frozen=True)
class _Sample:
    sid: str
    text: str
    tier: str
    e_hull: float | None
    novel: bool
    sg_achieved: int | None


def _int_or_none(value: Any) -> int | None:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value)


def _groups(table: pd.DataFrame, cfg: PairsSettings) -> dict[tuple[str, str], list[_Sample]]:
    """(group name, prompt) -> samples in table order. Unconditional rows have no requested space group."""
    for column in ("text", "prompt", "e_hull"):
        if column not in table.columns:
            raise UserError(f"scored table has no '{column}' column; is it the evaluate stage's structures.parquet?")
    ids = table["index"].astype(str) if "index" in table.columns and table["index"].is_unique else None
    groups: dict[tuple[str, str], list[_Sample]] = {}
    for position, (_, row) in enumerate(table.iterrows()):
        text = row["text"]
        if not isinstance(text, str) or not text.strip():
            continue  # nothing to train on; counted by the evaluation stage as a parse failure
        sg = _int_or_none(row.get("spacegroup_requested"))
        group = "unconditional" if sg is None else f"sg{sg}"
        e_hull = row.get("e_hull")
        sample = _Sample(
            sid=str(ids.iloc[position]) if ids is not None else str(position),
            text=text,
            tier=tier_of(row, cfg),
            e_hull=None if e_hull is None or pd.isna(e_hull) else float(e_hull),
            novel=_flag(row, "is_novel", False),
            sg_achieved=_int_or_none(row.get("spacegroup_achieved")),
        )
        groups.setdefault((group, str(row["prompt"])), []).append(sample)
    return groups


def _draw(rng: random.Random, pool: list[_Sample], k: int, dropped: Counter, kind: str) -> list[_Sample]:
    """k distinct partners from pool (all of them if fewer), in pool order so output is canonical."""
    if k > len(pool):
        dropped[f"short_{kind}"] += k - len(pool)
    if not pool or k == 0:
        return []
    picked = set(rng.sample(range(len(pool)), min(k, len(pool))))
    return [pool[j] for j in sorted(picked)]


def _pairs_for_group(
    group: str, prompt: str, samples: list[_Sample], cfg: PairsSettings, seed: int, dropped: Counter
) -> Iterable[Pair]:
    by_tier = {t: [s for s in samples if s.tier == t] for t in TIERS}
    rejects = by_tier["unstable"] + (by_tier["failed"] if cfg.failed == "unstable" else [])
    good = [s for s in samples if s.tier in ("stable", "metastable")]

    def make(kind: str, chosen: _Sample, rejected: _Sample) -> Pair:
        return Pair(prompt, chosen.text, rejected.text, kind, group, chosen.sid, rejected.sid,
                    chosen.e_hull, rejected.e_hull)

    def rng(kind: str) -> random.Random:
        return random.Random(f"{seed}:{kind}:{group}")  # str seeds are hashed with sha512: stable

    if group == "unconditional":
        if "stability_tiered" in cfg.kinds:
            r = rng("stability_tiered")
            for s in by_tier["stable"]:
                for m in _draw(r, by_tier["metastable"], cfg.metastable_per_stable, dropped, "stable_metastable"):
                    yield make("stability_tiered", s, m)
                for u in _draw(r, rejects, cfg.ratio, dropped, "stable_unstable"):
                    yield make("stability_tiered", s, u)
            for m in by_tier["metastable"]:
                for u in _draw(r, rejects, cfg.ratio, dropped, "metastable_unstable"):
                    yield make("stability_tiered", m, u)
        if "stability" in cfg.kinds:
            r = rng("stability")
            for a in good:
                for u in _draw(r, rejects, cfg.ratio, dropped, "stability"):
                    yield make("stability", a, u)
        if "novelty" in cfg.kinds:
            r = rng("novelty")
            novel = [s for s in by_tier["stable"] if s.novel]
            known = [s for s in by_tier["stable"] if not s.novel]
            for a in novel:
                for b in _draw(r, known, cfg.novelty_per_accept, dropped, "novelty"):
                    yield make("novelty", a, b)
    else:
        target = int(group[2:])
        if "spacegroup" in cfg.kinds:
            r = rng("spacegroup")
            right = [s for s in good if s.sg_achieved == target]
            wrong = [s for s in good if s.sg_achieved != target]
            for a in right:
                for b in _draw(r, wrong, cfg.ratio, dropped, "spacegroup"):
                    yield make("spacegroup", a, b)
        if "spacegroup_stability" in cfg.kinds:
            r = rng("spacegroup_stability")
            for a in good:
                for u in _draw(r, rejects, cfg.ratio, dropped, "spacegroup_stability"):
                    yield make("spacegroup_stability", a, u)


def build_pairs(table: pd.DataFrame, cfg: PairsSettings, seed: int) -> PairsResult:
    """All pairs for one iteration: unconditional and every conditioned group, merged and deduplicated."""
    groups = _groups(table, cfg)
    dropped: Counter = Counter()
    raw: list[Pair] = []
    # unconditional first, then groups by space-group number: a fixed order makes dedup deterministic
    order = sorted(groups, key=lambda key: (key[0] != "unconditional", int(key[0][2:]) if key[0] != "unconditional" else 0, key[1]))
    for group, prompt in order:
        raw.extend(_pairs_for_group(group, prompt, groups[(group, prompt)], cfg, seed, dropped))
    kind_rank = {k: i for i, k in enumerate(KINDS)}
    raw.sort(key=lambda p: kind_rank[p.kind])  # stable sort: group order kept within a kind
    seen: set[tuple[str, str, str]] = set()
    pairs: list[Pair] = []
    for pair in raw:
        key = (pair.prompt, pair.chosen, pair.rejected)
        if pair.chosen == pair.rejected:
            dropped["identical_text"] += 1
        elif key in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(key)
            pairs.append(pair)
    counts = {k: sum(p.kind == k for p in pairs) for k in cfg.kinds}
    tiers: dict[str, dict[str, int]] = {}
    for (group, _), samples in groups.items():
        bucket = tiers.setdefault(group, {t: 0 for t in TIERS})
        for s in samples:
            bucket[s.tier] += 1
    return PairsResult(pairs, counts, tiers, dict(dropped))


def write_pairs(result: PairsResult, path: str | Path) -> None:
    """JSONL, one pair per line, written to a temp file and renamed so a kill never leaves half a file."""
    atomic_write(path, lambda tmp: tmp.write_text("".join(json.dumps(asdict(pair)) + "\n" for pair in result.pairs)))


def read_pairs(path: str | Path) -> list[dict[str, Any]]:
    with Path(path).open() as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_scored(paths: str | Path | list) -> pd.DataFrame:
    """One table from one or more ``structures.parquet`` files (e.g. unconditional and conditional runs)."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    frames = []
    for p in paths:
        if not Path(p).is_file():
            raise UserError(f"no scored table at {p}; run the evaluate stage (or plaidpp rlip step=score) first")
        frames.append(pd.read_parquet(p))
    table = pd.concat(frames, ignore_index=True)
    if len(frames) > 1 and "index" in table.columns:
        table["index"] = range(len(table))  # indices restart per file; make ids unique
    return table


def pairs_stage(cfg: PairsStageConfig) -> dict[str, Any]:
    """``plaidpp pairs 'scored=[<structures.parquet>]' out=<pairs.jsonl>``: build, save, report counts."""
    from plaidpp.tracking import log_summary

    result = build_pairs(read_scored(list(cfg.scored)), cfg.pairs, cfg.seed)
    write_pairs(result, cfg.out)
    summary = result.summary()
    if cfg.metrics_file:
        write_metrics(cfg.metrics_file, summary)
    log_summary(cfg, "pairs", {"pairs": asdict(cfg.pairs), "seed": cfg.seed}, _flat_counts(summary))
    print(json.dumps(summary["pairs_by_kind"]), f"-> {cfg.out} ({summary['n_pairs']} pairs)")
    return summary


def _flat_counts(summary: dict[str, Any]) -> dict[str, float]:
    flat = {"pairs/n": float(summary["n_pairs"])}
    flat.update({f"pairs/{k}": float(v) for k, v in summary["pairs_by_kind"].items()})
    flat.update({f"pairs/dropped_{k}": float(v) for k, v in summary["dropped"].items()})
    return flat
