"""Decoding arbitrary text never hangs and never raises anything but DecodeError."""

from __future__ import annotations

import random
import time
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymatgen.core import Structure

from plaidpp.representation import DecodeError, get
from plaidpp.representation.base import DECODE_TIME_BUDGET_S

TIME_LIMIT_S = DECODE_TIME_BUDGET_S + 1.0  # the budget is checked between orbits; allow one orbit's work

# Characters a language model writing crystal text can emit, weighted towards the real alphabet.
ALPHABET = "0123456789 .-\n:()/_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+e"


def _decode_safely(name: str, text: str) -> None:
    start = time.monotonic()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = get(name).decode(text)
        assert isinstance(structure, Structure) and len(structure) > 0
    except DecodeError as exc:
        assert exc.reason  # every failure is countable
    assert time.monotonic() - start < TIME_LIMIT_S, f"decode took too long on {text[:200]!r}"


@pytest.mark.parametrize("name", ["wyckoff", "coords"])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(alphabet=ALPHABET, max_size=400))
def test_random_text_only_raises_decode_error(name, text):
    _decode_safely(name, text)


def _mutate(text: str, rng: random.Random) -> str:
    if not text.strip():
        return rng.choice(ALPHABET)
    tokens = text.split(" ")
    kind = rng.randrange(8)
    if kind == 0 and len(text) > 1:  # delete a character
        i = rng.randrange(len(text))
        return text[:i] + text[i + 1 :]
    if kind == 1:  # insert a character
        i = rng.randrange(len(text) + 1)
        return text[:i] + rng.choice(ALPHABET) + text[i:]
    if kind == 2:  # swap two tokens
        i, j = rng.randrange(len(tokens)), rng.randrange(len(tokens))
        tokens[i], tokens[j] = tokens[j], tokens[i]
        return " ".join(tokens)
    if kind == 3:  # a number becomes extreme
        i = rng.randrange(len(tokens))
        tokens[i] = rng.choice(["1e308", "-0", "0", "99999", "1e-300", "360.00", "0.000001", "inf", "-1"])
        return " ".join(tokens)
    if kind == 4:  # duplicate a line
        lines = text.splitlines()
        i = rng.randrange(len(lines))
        return "\n".join(lines[: i + 1] + [lines[i]] * rng.randint(1, 30) + lines[i + 1 :])
    if kind == 5:  # truncate (a model that stops early)
        return text[: rng.randrange(len(text) + 1)]
    if kind == 6:  # a Wyckoff label changes
        return text.replace(rng.choice(["a", "b", "c", "d", "e", "f"]), rng.choice(["g", "z", "A", "1"]), 1)
    lines = text.splitlines()  # drop a line
    del lines[rng.randrange(len(lines))]
    return "\n".join(lines)


@pytest.mark.parametrize("name", ["wyckoff", "coords"])
def test_mutated_real_encodings_only_raise_decode_error(name, structures):
    rng = random.Random(7)
    rep = get(name)
    texts = [rep.encode(s) for s in structures(40, seed=11)]
    for _ in range(1500):
        text = rng.choice(texts)
        for _ in range(rng.randint(1, 4)):
            text = _mutate(text, rng)
        _decode_safely(name, text)


def test_huge_inputs_are_refused_quickly():
    for name in ("wyckoff", "coords"):
        with pytest.raises(DecodeError) as err:
            get(name).decode("Na 0.1 0.2 0.3 4a\n" * 100_000)
        assert err.value.reason == "too_large"


def test_non_text_input_is_a_decode_error():
    for name in ("wyckoff", "coords"):
        with pytest.raises(DecodeError):
            get(name).decode(None)  # type: ignore[arg-type]


_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(lambda x: f"{x:.3f}"),
    st.sampled_from(["0", "1", "-1", "90.00", "120.00", "1e9", "0.333", "abc", ""]),
)
_site = st.tuples(
    st.sampled_from(["Na", "Cl", "O", "Fe", "Xx", "C", "h", "[MASK]"]),
    _numbers,
    _numbers,
    _numbers,
    st.sampled_from(["1a", "2b", "4a", "4c", "8f", "24d", "48e", "192l", "3q", "4", "a4"]),
).map(" ".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    formula=st.sampled_from(["NaCl", "Na4Cl4", "", "Xx2"]),
    group=st.sampled_from(["Fm-3m", "P1", "C2/c", "P6_3/mmc", "F-43m", "Ia-3d", "Q1", "230", "0"]),
    abc=st.lists(_numbers, min_size=2, max_size=4),
    angles=st.lists(_numbers, min_size=2, max_size=4),
    n_sites=st.sampled_from(["(4)", "(999999)", "4", "(x)"]),
    sites=st.lists(_site, max_size=8),
)
def test_grammar_shaped_wyckoff_text_only_raises_decode_error(formula, group, abc, angles, n_sites, sites):
    text = "\n".join(
        [formula, f"Spacegroup: {group}", "abc: " + " ".join(abc), "angles: " + " ".join(angles), f"Sites {n_sites}", *sites]
    )
    _decode_safely("wyckoff", text)
