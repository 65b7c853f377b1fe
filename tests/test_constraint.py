"""Constrained decoding (issue 12): the grammar and the automaton accept every real text, and texts sampled
from random logits under the constraint always decode, add up, keep to their group and never dead-end."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest
import torch
from pymatgen.core import Structure

from plaidpp.constraint.automaton import COVALENT_RADII, Constraint, Rules, WyckoffState
from plaidpp.constraint.feasibility import fits
from plaidpp.constraint.grammar import ELEMENTS
from plaidpp.constraint.spacegroups import TABLE_FILE, build_tables, space_groups
from plaidpp.evaluation.validity import structural_validity
from plaidpp.representation import DecodeError, get
from plaidpp.representation.wyckoff import spacegroup_number
from plaidpp.settings.sampling import SamplerSettings

SAMPLER = SamplerSettings()
RULES = Rules.of(SAMPLER)  # the sampler's own settings


@pytest.fixture(scope="module")
def wyckoff_texts(mp20_sample):
    """Wyckoff texts of 150 real MP-20 training crystals."""
    representation = get("wyckoff")
    return [representation.encode(Structure.from_str(cif, fmt="cif"))
            for cif in mp20_sample(150, seed=3, split="train")["cif"]]


@pytest.fixture(scope="module")
def crystal_tokenizer(wyckoff_texts):
    from plaidpp.prompts import unconditional_prompt
    from plaidpp.training.tokenizer import train_crystal_tokenizer

    return train_crystal_tokenizer([unconditional_prompt() + t for t in wyckoff_texts], vocab_size=700)


@pytest.fixture(scope="module")
def qwen_tokenizer():
    from plaidpp.data.tokenizer import load_qwen_tokenizer

    return load_qwen_tokenizer()


def test_the_vendored_table_is_pyxtals():
    assert build_tables() == json.loads(TABLE_FILE.read_text())


@pytest.mark.parametrize("mlip", ["chgnet", "sevennet", "sevennet_l3i5"])
def test_every_grammar_element_is_known_to_the_potentials_and_the_hull(mlip, make_config):
    from pymatgen.core import Composition

    from plaidpp.evaluation.mlip import supported_elements
    from plaidpp.evaluation.score import get_hull

    cfg = make_config("evaluate", f"mlip={mlip}", "samples=-", "out=-")
    assert set(ELEMENTS) <= supported_elements(cfg.mlip)
    assert not get_hull(cfg).missing_elements(Composition(" ".join(ELEMENTS)))


def test_every_real_text_fits_its_group_and_is_accepted(wyckoff_texts):
    for text in wyckoff_texts:
        lines = text.split("\n")
        number = spacegroup_number(lines[1].split(": ", 1)[1])
        counts = collections.Counter()
        for line in lines[5:]:
            element, *_, label = line.split()
            counts[element] += space_groups()[number].position(label).multiplicity
        assert fits(number, counts.values(), max_atoms=20)
        for requested in (None, number):
            state = WyckoffState(RULES, requested=requested).feed(text)
            assert state is not None and state.can_end(), text


@pytest.mark.parametrize("which", ["crystal", "qwen"])
def test_every_real_token_is_allowed(which, wyckoff_texts, crystal_tokenizer, qwen_tokenizer):
    tokenizer = crystal_tokenizer if which == "crystal" else qwen_tokenizer
    constraint = Constraint(tokenizer, "wyckoff", "grammar", RULES)
    # the automaton's exact walk of Qwen's 151k tokens takes ~11 s per text here (measured with the distance rule,
    # whose coordinate sets it walks value by value): a few texts cover its token shapes
    for text in wyckoff_texts[:40 if which == "crystal" else 3]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        batch = constraint.start([None])
        for token in ids:
            logits = torch.zeros(1, len(tokenizer))
            batch.mask(logits, [0])
            assert logits[0, token] == 0, (text, tokenizer.decode([token]))
            batch.advance([0], [token])
        assert batch.dead_ends == 0


def _sample(constraint: Constraint, requested: list[int | None], seed: int, max_new_tokens: int = 600):
    """Texts drawn from random logits (a model that knows nothing) under the constraint, through the compact
    sampler's draw (check each draw, redraw a forbidden one from the fast mask): nearly every draw of a random
    model is forbidden, so this is the redraw path at every step."""
    from plaidpp.sampling.generate import _constrained_draw

    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    batch = constraint.start(requested)
    live = list(range(len(requested)))
    tokens: list[list[int]] = [[] for _ in requested]
    for _ in range(max_new_tokens):
        logits = torch.from_numpy(rng.normal(0.0, 2.0, (len(live), constraint.vocab_size)).astype(np.float32))
        chosen = _constrained_draw(logits, live, 1.0, 1.0, generator, batch).tolist()
        for row, token in zip(live, chosen):
            tokens[row].append(token)
        live = [row for row, token in zip(live, chosen) if token != constraint.eos]
        if not live:
            break
    return tokens, batch, live


def _check_text(text: str, requested: int | None, state: WyckoffState) -> bool:
    """Checks a text sampled under the constraint; True when its atoms kept the 0.5 Å rule (``state.crowded``
    is 0: the automaton never had to fall back), which the evaluation's validity check then confirms."""
    structure = get("wyckoff").decode(text)  # raises DecodeError if it does not decode
    assert structure.properties["decode_warnings"] == [], text
    lines = text.split("\n")
    group = space_groups()[spacegroup_number(lines[1].split(": ", 1)[1])]
    if requested is not None:
        assert group.number == requested
    assert len(structure) <= 20 * group.centering
    fixed = collections.Counter()
    for line in lines[5:]:
        _, *xyz, label = line.split()
        position = group.position(label)
        point = np.array([float(v) for v in xyz])
        params = {}
        for i, row in enumerate(position.rotation):  # the written point is of the position's form
            new = [j for j, v in enumerate(row) if v and j not in params]
            if new:
                params[new[0]] = point[i] - position.translation[i]
                continue
            expected = sum(v * params[j] for j, v in enumerate(row) if v) + position.translation[i]
            assert abs((point[i] - expected + 0.5) % 1.0 - 0.5) < 0.0015, (line, text)
        fixed[label] += position.fixed
    assert max(fixed.values(), default=0) <= 1, text  # no fixed point taken twice
    volume, floor = structure.lattice.volume, state.rules.volume_fraction * state.formula_volume
    assert state.rules.volume_fraction > 0 and volume >= floor * (1 - 1e-9), (volume, floor, text)  # room for it
    if state.crowded == 0:
        check = structural_validity(structure, min_distance=state.rules.min_distance)
        assert check.valid or check.reason == "volume_out_of_range", (check, text)
    if state.crowded == 0 and state.loosened == 0 and len(structure) > 1:  # the covalent floor held throughout
        radii = np.array([COVALENT_RADII[site.specie.symbol] for site in structure])
        floor = np.maximum(state.rules.min_distance, state.rules.covalent_fraction * (radii[:, None] + radii[None, :]))
        distances = structure.distance_matrix + np.diag(np.full(len(structure), np.inf))
        assert (distances > floor - 1e-6).all(), (float((distances - floor).min()), text)
    return state.crowded == 0


@pytest.mark.parametrize("mode", ["grammar", "grammar+spacegroup"])
def test_random_logits_under_the_constraint_always_decode(mode, crystal_tokenizer):
    constraint = Constraint(crystal_tokenizer, "wyckoff", mode, RULES)
    rng = np.random.default_rng(0)
    requested = [None if i % 4 == 0 else int(rng.integers(1, 231)) for i in range(96)]
    tokens, batch, unfinished = _sample(constraint, requested, seed=1)
    assert batch.dead_ends == 0 and not unfinished
    kept = [_check_text(crystal_tokenizer.decode(ids[:-1]).strip(), group if mode == "grammar+spacegroup" else None,
                        state) for ids, group, state in zip(tokens, requested, batch.states)]
    # random formulas in random cells: most leave room for their atoms, and those keep 0.5 Å apart
    assert sum(kept) >= len(kept) // 2, sum(kept)


def test_the_samplers_draw_check_agrees_with_the_mask(crystal_tokenizer):
    """The compact sampler keeps a draw when ``accepts`` says yes and redraws from the masked logits otherwise:
    exact only if ``accepts`` is the mask, token for token (checked on the tokens random texts meet)."""
    constraint = Constraint(crystal_tokenizer, "wyckoff", "grammar+spacegroup", RULES)
    rng = np.random.default_rng(5)
    requested = [None, 15, 194, 216, 1, 62]
    batch = constraint.start(requested)
    live = list(range(len(requested)))
    checked = 0
    for _ in range(400):
        logits = torch.from_numpy(rng.normal(0.0, 2.0, (len(live), constraint.vocab_size)).astype(np.float32))
        batch.mask(logits, live)
        allowed = torch.isfinite(logits)
        for k, row in enumerate(live):
            probe = [int(t) for t in rng.choice(constraint.vocab_size, 25, replace=False)]
            probe += torch.nonzero(allowed[k]).squeeze(1).tolist()[:10]
            assert batch.accepts([row] * len(probe), probe) == [bool(allowed[k, t]) for t in probe]
            checked += len(probe)
        batch._fed.clear()  # the probes' stashed states are not the draw's
        chosen = torch.multinomial(logits.softmax(-1), 1).squeeze(1).tolist()
        batch.advance(live, chosen)
        live = [row for row, token in zip(live, chosen) if token != constraint.eos]
        if not live:
            break
    assert not live and checked > 5000 and batch.dead_ends == 0


@pytest.mark.parametrize("abc_angles", [(4.0, 5.0, 6.0, 90.0, 90.0, 90.0), (3.1, 7.9, 5.2, 64.0, 118.0, 71.0),
                                        (2.5, 2.6, 14.0, 35.0, 40.0, 45.0)])
@pytest.mark.parametrize("within", [0.5, 2.0])
def test_distance_rule_sees_every_close_pair(abc_angles, within):
    """The automaton's periodic lengths (nearest image in fractional terms where the cell's plane spacing allows,
    27 cells otherwise) find every distance below ``within`` exactly, against a brute-force search of 125 cells."""
    from pymatgen.core import Lattice

    from plaidpp.constraint.automaton import _lengths

    lattice = Lattice.from_parameters(*abc_angles).matrix
    rng = np.random.default_rng(7)
    difference = rng.uniform(-1.5, 1.5, (20000, 3))
    shifts = np.array(np.meshgrid(*[range(-2, 3)] * 3)).reshape(3, -1).T
    brute = np.linalg.norm((difference[:, None, :] + shifts) @ lattice, axis=-1).min(axis=1)
    found = _lengths(difference, lattice, within)
    close = brute < within
    assert close.sum() > 20  # the test sees close pairs at all
    np.testing.assert_allclose(found[close], brute[close], atol=1e-9)
    assert np.all(found[~close] >= within - 1e-9)


@pytest.mark.parametrize("low_high", [(100, 9999), (451, 9999), (2503, 2503), (8000, 15000), (3000, 4499),
                                      (9999, 9999), (12345, 14999)])
def test_number_rule_leads_only_to_numbers_in_range(low_high):
    """``_number_next`` (the volume rule's lattice numbers) against every number of its form: walking its
    characters reaches exactly the numbers in [low, high], and never a prefix with nowhere to go."""
    from plaidpp.constraint.automaton import _number_next

    low, high = low_high
    reached, stack = set(), [""]
    while stack:
        word = stack.pop()
        chars = _number_next(word, low, high, " ")
        assert chars, word  # no dead end
        for char in chars:
            if char == " ":
                reached.add(word)
            else:
                stack.append(word + char)
    expected = {f"{v // 100}.{v % 100:02d}" for v in range(low, high + 1)}
    assert reached == expected


@pytest.mark.parametrize("group, formula", [(1, "Cs4I4"), (2, "Cs4I4"), (12, "Cs4I4"), (15, "Cs4I4"), (62, "Cs4I4"),
                                            (139, "Cs4I4"), (166, "Cs3I3"), (194, "Cs4I4"), (225, "Cs4I4")])
def test_volume_rule_leaves_room_in_every_crystal_system(group, formula):
    """With a floor near the median real cell (0.95 of the predicted volume), random lattice lines for one
    formula in each crystal system always find a cell (no dead end) and every cell found holds the floor."""
    from plaidpp.constraint.automaton import ANGLE_RANGE, LENGTH_RANGE, _number_next
    from plaidpp.representation.base import build_lattice

    rng = np.random.default_rng(group)
    rules = Rules(SAMPLER.max_atoms, SAMPLER.min_distance, SAMPLER.covalent_fraction, 0.95)
    for _ in range(20):
        state = WyckoffState(rules).feed(f"{formula}\nSpacegroup: {space_groups()[group].symbol}\n")
        for label in ("abc: ", "angles: "):
            state = state.feed(label)
            line = state.line
            while state.line == line:  # one number after another: a character the rules allow, at random
                words = state.partial.split(" ")
                chars = state.next_chars()
                if chars is None:  # a free number: the grammar's format and range
                    grammar = LENGTH_RANGE if label == "abc: " else ANGLE_RANGE
                    chars = _number_next(words[-1], *grammar, "\n" if len(words) == 4 else " ")
                options = sorted(c for c in chars if state.step(c) is not None)
                assert options, state.partial
                state = state.step(options[rng.integers(len(options))])
        volume = build_lattice([float(v) for v in state.lengths], [float(v) for v in state.angles]).volume
        assert volume >= 0.95 * state.formula_volume * (1 - 1e-9), (group, state.lengths, state.angles)


@pytest.mark.timeout(60)
def test_a_coords_text_at_max_atoms_ends(mp20_sample):
    """At ``max_atoms`` sites the coords grammar is complete and llguidance stops the matcher: its mask keeps EOS
    alone, which the draw check must accept too, or the compact sampler redraws forever (the coords reference
    run hung there). Random logits, one site allowed: every text ends after its one site and decodes."""
    from plaidpp.prompts import unconditional_prompt
    from plaidpp.training.tokenizer import train_crystal_tokenizer

    representation = get("coords")
    texts = [representation.encode(Structure.from_str(cif, fmt="cif"))
             for cif in mp20_sample(60, seed=4, split="train")["cif"]]
    tokenizer = train_crystal_tokenizer([unconditional_prompt() + t for t in texts], vocab_size=500)
    constraint = Constraint(tokenizer, "coords", "grammar", Rules.of(SamplerSettings(max_atoms=1)))
    tokens, batch, unfinished = _sample(constraint, [None] * 8, seed=2, max_new_tokens=300)
    assert not unfinished and batch.dead_ends == 0
    for ids in tokens:
        try:  # the grammar keeps each angle in range, not the three together: a cell may not close
            assert len(representation.decode(tokenizer.decode(ids[:-1]).strip())) == 1
        except DecodeError as exc:
            assert exc.reason == "bad_lattice", exc
