"""Prompt templates of the paper (Figure 2, Table 3) and the SFT task mix (appendix 7.2).

The wording follows crystal-text-llm, which PLaID++ inherits, so a model trained here reads the paper's
prompts verbatim. Every random choice takes an explicit ``random.Random`` so examples are reproducible.

Tasks:
- generation, unconditional: ``Below is a description of a bulk material. Generate ...:\\n`` + crystal
- generation, conditioned: one to five of (formula, e_above_hull, formation energy, band gap, space group)
  inserted after the first sentence, in a fixed order
- infill: the crystal with one element replaced by ``[MASK]``; the completion is that element

How often each task is drawn is ``train.task_mix`` (paper: infill one third of the time).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Any

from plaidpp.settings.model import TaskMixSettings
from plaidpp.settings.sampling import PromptSet

PREAMBLE = "Below is a description of a bulk material. "
INSTRUCTION = (
    "Generate a description of the lengths and angles of the lattice vectors "
    "and then the element type and coordinates for each atom within the lattice:\n"
)
INFILL_PREAMBLE = 'Below is a partial description of a bulk material where one element has been replaced with the string "[MASK]":\n'
INFILL_INSTRUCTION = "Generate an element that could replace [MASK] in the bulk material:\n"
MASK = "[MASK]"

# Condition key -> sentence. Order here is the order sentences appear in a prompt.
CONDITION_SENTENCES: dict[str, str] = {
    "formula": "The chemical formula is {}. ",
    "e_above_hull": "The energy above the convex hull is {}. ",
    "formation_energy_per_atom": "The formation energy per atom is {}. ",
    "band_gap": "The band gap is {}. ",
    "spacegroup": "The spacegroup number is {}. ",
}
CONDITIONS = tuple(CONDITION_SENTENCES)


@dataclass(frozen=True)
class Example:
    """One supervised example: loss is taken on ``completion`` only."""

    prompt: str
    completion: str
    task: str  # "unconditional" | "conditional" | "infill"
    conditions: tuple[str, ...] = ()


def _format_value(key: str, value: Any) -> str:
    if key in ("formula", "spacegroup"):
        return str(int(value)) if key == "spacegroup" else str(value)
    return str(round(float(value), 4))


def generation_prompt(conditions: dict[str, Any] | None = None) -> str:
    """The generation prompt; ``conditions`` maps keys of ``CONDITION_SENTENCES`` to values."""
    conditions = conditions or {}
    unknown = set(conditions) - set(CONDITION_SENTENCES)
    if unknown:
        raise ValueError(f"unknown prompt conditions {sorted(unknown)}; known: {list(CONDITIONS)}")
    body = "".join(
        CONDITION_SENTENCES[key].format(_format_value(key, conditions[key]))
        for key in CONDITIONS
        if key in conditions
    )
    return PREAMBLE + body + INSTRUCTION


def unconditional_prompt() -> str:
    return generation_prompt()


def spacegroup_prompt(number: int) -> str:
    """``Below is a description of a bulk material. The spacegroup number is N. Generate ...``"""
    if not 1 <= int(number) <= 230:
        raise ValueError(f"space group number must be 1..230, got {number}")
    return generation_prompt({"spacegroup": int(number)})


def prompt_counts(prompts: PromptSet) -> tuple[list[str], list[int]]:
    """The prompts a ``PromptSet`` asks for and how many samples each: unconditional first, then each space
    group in order; prompts with a zero count are left out."""
    texts, counts = [], []
    if prompts.n_unconditional > 0:
        texts.append(unconditional_prompt())
        counts.append(prompts.n_unconditional)
    if prompts.n_per_spacegroup > 0:
        for number in prompts.spacegroups:
            texts.append(spacegroup_prompt(number))
            counts.append(prompts.n_per_spacegroup)
    return texts, counts


def infill_example(text: str, rng: random.Random) -> Example:
    """Mask every occurrence of one element (chosen at random) in the crystal text.

    Only element positions are masked: the first token of a site line, and the formula line of the
    Wyckoff text. A plain string replace would also hit "C" in "Spacegroup: C2/c".
    """
    lines = text.splitlines()
    elements = sorted({line.split()[0] for line in lines if _is_element_token(line)})
    if not elements:
        raise ValueError("no element lines to mask in the crystal text")
    element = rng.choice(elements)
    has_formula = len(lines) > 1 and lines[1].startswith("Spacegroup:")
    masked = []
    for i, line in enumerate(lines):
        if i == 0 and has_formula:
            line = re.sub(rf"{element}(?![a-z])", MASK, line)
        elif _is_element_token(line) and line.split()[0] == element:
            line = MASK + line[len(element):]
        masked.append(line)
    return Example(INFILL_PREAMBLE + "\n".join(masked) + "\n" + INFILL_INSTRUCTION, element, "infill")


def _is_element_token(line: str) -> bool:
    parts = line.split()
    return bool(parts) and re.fullmatch(r"[A-Z][a-z]?", parts[0]) is not None and line.startswith(parts[0])


def available_conditions(properties: dict[str, Any]) -> list[str]:
    """Condition keys whose value is present and finite in a data row's properties."""
    keys = []
    for key in CONDITIONS:
        value = properties.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        keys.append(key)
    return keys


def build_example(text: str, properties: dict[str, Any], rng: random.Random, mix: TaskMixSettings) -> Example:
    """One training example from a crystal text, drawn from the task mix (``train.task_mix``)."""
    if rng.random() < mix.infill:
        return infill_example(text, rng)
    keys = available_conditions(properties)
    if not keys or rng.random() < mix.unconditional:
        return Example(unconditional_prompt(), text, "unconditional")
    chosen = rng.sample(keys, rng.randint(1, min(5, len(keys))))
    conditions = {k: properties[k] for k in chosen}
    return Example(generation_prompt(conditions), text, "conditional", tuple(k for k in CONDITIONS if k in chosen))
