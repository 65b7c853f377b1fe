"""Prompt templates and the SFT task mix of the paper (Figure 2, appendix 7.2)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from plaidpp import prompts
from plaidpp.settings.model import TaskMixSettings
from plaidpp.settings.sampling import PAPER_SPACEGROUPS, PromptSet
from tests.test_representation_wyckoff import TABLE3

MIX = TaskMixSettings()  # the paper's: one third infill

TEXT = TABLE3["Mn8O12F4"]  # the paper's own C2/c example
PROPS = {"formula": "MnO3F", "e_above_hull": 0.0123456, "formation_energy_per_atom": -2.1, "band_gap": 1.5, "spacegroup": 15}


def test_spacegroup_prompt_is_the_papers_wording():
    assert prompts.spacegroup_prompt(15) == (
        "Below is a description of a bulk material. The spacegroup number is 15. Generate a description of the "
        "lengths and angles of the lattice vectors and then the element type and coordinates for each atom within "
        "the lattice:\n"
    )
    with pytest.raises(ValueError):
        prompts.spacegroup_prompt(231)


def test_conditions_appear_in_a_fixed_order_with_rounded_values():
    prompt = prompts.generation_prompt({"spacegroup": 15, "e_above_hull": 0.0123456, "formula": "MnO3F"})
    assert prompt.index("chemical formula is MnO3F.") < prompt.index("convex hull is 0.0123.") < prompt.index(
        "spacegroup number is 15."
    )
    with pytest.raises(ValueError):
        prompts.generation_prompt({"density": 3})


def test_task_mix_is_deterministic_under_a_seed():
    first = [prompts.build_example(TEXT, PROPS, random.Random(3), MIX) for _ in range(5)]
    second = [prompts.build_example(TEXT, PROPS, random.Random(3), MIX) for _ in range(5)]
    assert first == second


def test_task_mix_follows_the_paper_one_third_infill():
    rng = random.Random(0)
    examples = [prompts.build_example(TEXT, PROPS, rng, MIX) for _ in range(3000)]
    tasks = Counter(e.task for e in examples)
    assert abs(tasks["infill"] / 3000 - 1 / 3) < 0.03
    conditional = [e for e in examples if e.task == "conditional"]
    assert {len(e.conditions) for e in conditional} == {1, 2, 3, 4, 5}
    assert all(e.completion == TEXT for e in examples if e.task != "infill")


def test_infill_masks_element_positions_but_not_the_space_group_symbol():
    rng = random.Random(0)
    seen = set()
    for _ in range(50):
        example = prompts.infill_example(TEXT.replace("Mn", "C"), rng)
        seen.add(example.completion)
        assert "Spacegroup: C2/c" in example.prompt
        assert example.completion not in example.prompt.split("Sites (24)")[1].split("Generate")[0]
    assert seen == {"C", "O", "F"}


def test_properties_with_missing_values_are_not_offered_as_conditions():
    assert prompts.available_conditions({"formula": "NaCl", "band_gap": float("nan"), "spacegroup": None}) == ["formula"]


def test_prompt_counts_list_the_unconditional_prompt_then_each_group_and_skip_zero_counts():
    texts, counts = prompts.prompt_counts(PromptSet(n_unconditional=3, n_per_spacegroup=2))
    assert texts == [prompts.unconditional_prompt(), *(prompts.spacegroup_prompt(g) for g in PAPER_SPACEGROUPS)]
    assert counts == [3] + [2] * 7
    assert prompts.prompt_counts(PromptSet(n_unconditional=5, n_per_spacegroup=0)) == (
        [prompts.unconditional_prompt()], [5])
