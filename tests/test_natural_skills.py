"""Conformance and spot-check tests for the `natural` skill set."""
from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skill_catalog.natural.checks import normalize_list, normalize_number, normalize_text
from skill_catalog.natural.lexical import OPPOSITE
from skill_catalog.natural.types import conforms
from skill_catalog.skill import distractors, get_skill, is_subtype, skills, value_type

NATURAL = skills("natural")
NATURAL_TYPES = sorted({name for s in NATURAL for name in (s.input_type, s.output_type)})
PAIRS = [(a, b) for a in NATURAL for b in NATURAL if a.name != b.name and is_subtype(a.output_type, b.input_type)]
by_name = pytest.mark.parametrize("sk", NATURAL, ids=lambda s: s.name)


def _ancestors(type_name: str) -> list[str]:
    chain = []
    current: str | None = type_name
    while current is not None:
        chain.append(current)
        current = value_type(current).parent
    return chain


def _has_shape(value: str, type_name: str) -> bool:
    return all(conforms(value, name) for name in _ancestors(type_name))


def _inputs(sk, count: int = 50, seed: int = 0) -> list[str]:
    return [sk.sample_input(random.Random(seed + i)) for i in range(count)]


def test_natural_set_has_at_least_32_skills_in_6_families():
    assert len(NATURAL) >= 32
    assert len({s.family for s in NATURAL}) >= 6


def test_at_least_40_type_valid_ordered_pairs_chain():
    assert len(PAIRS) >= 40
    assert len({(a.family, b.family) for a, b in PAIRS if a.family != b.family}) >= 10


@by_name
def test_sampler_is_deterministic_given_seed(sk):
    assert _inputs(sk, 20, seed=7) == _inputs(sk, 20, seed=7)
    assert len(set(_inputs(sk, 50))) > 1


@by_name
def test_gold_is_accepted_by_checker(sk):
    for x in _inputs(sk):
        gold = sk.apply(x)
        assert sk.check(gold, gold)
        assert sk.check(f'  "{gold.upper()}." ', gold), "case, spaces, quotes and a final period are forgiven"


@by_name
def test_output_has_declared_type_shape(sk):
    for x in _inputs(sk):
        out = sk.apply(x)
        assert _has_shape(out, sk.output_type), f"{sk.name}({x!r}) = {out!r} is not a {sk.output_type}"


@by_name
def test_apply_is_total_on_every_subtype_of_input_type(sk):
    subtypes = [t for t in NATURAL_TYPES if is_subtype(t, sk.input_type)]
    for type_name in subtypes:
        for i in range(20):
            x = value_type(type_name).sample(random.Random(i))
            assert _has_shape(sk.apply(x), sk.output_type), f"{sk.name} on {type_name} {x!r}"


@by_name
def test_distractors_are_rejected_by_checker_and_differ_from_gold(sk):
    for i, x in enumerate(_inputs(sk, 30)):
        gold = sk.apply(x)
        for d in distractors(sk, x, random.Random(i), 4):
            assert d != gold
            assert not sk.check(d, gold), f"{sk.name}({x!r}): distractor {d!r} passes the checker"


@by_name
def test_at_least_two_distractors_for_most_inputs(sk):
    support = value_type(sk.output_type).support_size
    wanted = 2 if support is None else min(2, support - 1)
    counts = [len(distractors(sk, x, random.Random(i), 4)) for i, x in enumerate(_inputs(sk, 30))]
    assert sum(c >= wanted for c in counts) >= 0.9 * len(counts), counts


@by_name
def test_distractors_are_deterministic_given_rng(sk):
    x = sk.sample_input(random.Random(3))
    assert distractors(sk, x, random.Random(5), 4) == distractors(sk, x, random.Random(5), 4)


@by_name
def test_instruction_has_one_field_and_reads_as_a_step(sk):
    assert sk.instruction.count("{x}") == 1
    assert "{" not in sk.instruction.replace("{x}", "")
    for filler in ('"cat"', "the previous result"):
        text = sk.instruction.format(x=filler)
        assert text.endswith(".") and filler in text


@by_name
def test_tag_is_compact_lowercase_and_checker_parts_are_named(sk):
    assert sk.tag == sk.tag.lower() and " " not in sk.tag and sk.tag
    assert sk.normalize.__name__ != "<lambda>"
    assert sk.distractor_fn is None or sk.distractor_fn.__name__ != "<lambda>"
    assert sk.description


def test_tags_are_unique():
    tags = Counter(s.tag for s in NATURAL)
    assert [t for t, c in tags.items() if c > 1] == []


@pytest.mark.parametrize("type_name", NATURAL_TYPES)
def test_type_samples_conform_to_type_and_its_ancestors(type_name):
    vtype = value_type(type_name)
    samples = [vtype.sample(random.Random(i)) for i in range(3000)]
    assert all(_has_shape(x, type_name) for x in samples)
    if vtype.support_size is not None:
        assert len(set(samples)) == vtype.support_size


def test_type_valid_pairs_execute_and_their_distractors_hold():
    for a, b in PAIRS:
        for i in range(3):
            mid = a.apply(a.sample_input(random.Random(i)))
            out = b.apply(mid)
            assert _has_shape(out, b.output_type), f"{b.name}({a.name}(...)) = {out!r}"
            assert not any(b.check(d, out) for d in distractors(b, mid, random.Random(i), 4))


def test_random_four_step_chains_execute():
    rng = random.Random(0)
    for _ in range(300):
        step = rng.choice(NATURAL)
        x = step.apply(step.sample_input(rng))
        for _ in range(3):
            followers = [b for b in NATURAL if is_subtype(step.output_type, b.input_type)]
            if not followers:
                break
            step = rng.choice(followers)
            x = step.apply(x)
            assert _has_shape(x, step.output_type)


@pytest.mark.parametrize(
    "name, x, gold",
    [
        ("capital_of", "France", "Paris"),
        ("country_of_capital", "Canberra", "Australia"),
        ("nationality", "Denmark", "Danish"),
        ("past_tense", "go", "went"),
        ("past_participle", "go", "gone"),
        ("past_tense", "stop", "stopped"),
        ("plural", "mouse", "mice"),
        ("plural", "sheep", "sheep"),
        ("singular", "children", "child"),
        ("opposite", "hot", "cold"),
        ("comparative", "good", "better"),
        ("superlative", "bad", "worst"),
        ("element_symbol", "iron", "Fe"),
        ("element_name", "Au", "gold"),
        ("atomic_number", "oxygen", "8"),
        ("young_of", "cat", "kitten"),
        ("next_day", "Sunday", "Monday"),
        ("previous_month", "January", "December"),
        ("month_number", "March", "3"),
        ("month_name", "12", "December"),
        ("reverse", "France", "ecnarf"),
        ("drop_vowels", "table", "tbl"),
        ("vowel_count", "house", "3"),
        ("distinct_letter_count", "apple", "4"),
        ("next_letter", "z", "a"),
        ("letter_position", "z", "26"),
        ("predecessor", "1", "0"),
        ("square", "20", "400"),
        ("digit_sum", "19", "10"),
        ("digits_of", "407", "4, 0, 7"),
        ("parity", "0", "even"),
        ("number_to_word", "7", "seven"),
        ("word_to_number", "twenty", "20"),
        ("list_max", "3, 8, 1", "8"),
        ("sort_list", "3, 8, 1", "1, 3, 8"),
        ("reverse_list", "3, 8, 1", "1, 8, 3"),
    ],
)
def test_spot_check_of_facts_and_irregular_forms(name, x, gold):
    assert get_skill("natural", name).apply(x) == gold


def test_past_tense_distractors_include_the_over_regularized_form():
    sk = get_skill("natural", "past_tense")
    assert "goed" in distractors(sk, "go", random.Random(0), 4)


def test_capital_distractors_come_from_the_same_region():
    sk = get_skill("natural", "capital_of")
    european_capitals = {"Berlin", "Rome", "Madrid", "Lisbon", "Athens", "Vienna", "Budapest", "Warsaw", "Stockholm",
                         "Oslo", "Helsinki", "Copenhagen", "Dublin", "Brussels", "Reykjavik", "Bucharest", "Sofia",
                         "Belgrade", "Zagreb", "Riga", "Vilnius", "Tallinn", "Moscow"}
    assert set(distractors(sk, "France", random.Random(0), 4)) <= european_capitals


def test_opposite_is_an_involution_on_its_table():
    sk = get_skill("natural", "opposite")
    assert all(sk.apply(sk.apply(adj)) == adj for adj in OPPOSITE)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ('  "Paris." ', "paris"), ("'Paris'.", "paris"), ("PARIS", "paris"),
        ("New   York", "new york"), ("\u201cParis\u201d", "paris"),
    ],
)
def test_normalize_text_forgives_case_space_quotes_and_period(raw, expected):
    assert normalize_text(raw) == expected


@pytest.mark.parametrize("raw, expected", [(" 007 ", "7"), ("1,000", "1000"), ('"12".', "12"), ("twelve", "twelve")])
def test_normalize_number_writes_integers_canonically(raw, expected):
    assert normalize_number(raw) == expected


@pytest.mark.parametrize("raw", ["1, 3, 8", "1,3,8", "[1, 3, 8]", "1 3 8", "1, 3, and 8", " '1; 3; 08'. "])
def test_normalize_list_accepts_any_separator(raw):
    assert normalize_list(raw) == "1, 3, 8"


def test_checkers_do_not_forgive_a_different_answer():
    assert not get_skill("natural", "capital_of").check("Pariss", "Paris")
    assert not get_skill("natural", "sort_list").check("3, 8, 1", "1, 3, 8")
    assert not get_skill("natural", "successor").check("80", "8")
    assert not get_skill("natural", "reverse").check("tac ", "cat")


@given(st.text(max_size=30))
def test_normalize_text_is_idempotent(raw):
    assert normalize_text(normalize_text(raw)) == normalize_text(raw)
