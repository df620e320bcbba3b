"""Properties of the composer, the held-out split and the training text."""
from __future__ import annotations

import itertools
import math
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skill_catalog import CatalogError, get_skill, skills
from skill_catalog.compose import CompositionSpec, compose_items
from skill_catalog.heldout import count_seen, split_of
from skill_catalog.render import render, split_parts
from skill_catalog.training_text import TextSpec, iter_pieces

SYMBOLIC = tuple(s.name for s in skills("symbolic"))


def _spec(seed: int, **kw) -> CompositionSpec:
    base = dict(skill_set="symbolic", ks=(1, 2, 3), modes=("conjunction", "chain"), items_per_cell=3,
                single_items_per_skill=1, n_shots=1, seed=seed)
    return CompositionSpec(**{**base, **kw})


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), skill_set=st.sampled_from(["symbolic", "natural"]))
def test_compose_is_deterministic_given_seed(seed: int, skill_set: str) -> None:
    spec = _spec(seed, skill_set=skill_set, ks=(1, 2), single_items_per_skill=1)
    assert list(compose_items(spec)) == list(compose_items(spec))


def test_compose_changes_with_seed() -> None:
    a = [i.item_id for i in compose_items(_spec(0))]
    b = [i.item_id for i in compose_items(_spec(1))]
    assert len(set(a) & set(b)) < len(a) // 2


def test_item_ids_are_stable_golden() -> None:
    """Content ids must not change across machines, Python runs or refactors (bump the version instead)."""
    ids = [i.item_id for i in compose_items(_spec(0, ks=(1, 2), n_shots=0))][:4]
    ids += [i.item_id for i in compose_items(_spec(0, ks=(2,), n_shots=0))][-2:]
    assert ids == GOLDEN_IDS


GOLDEN_IDS = ["20809f177fda9f77", "4be46c8155f23067", "b878f9fc47085702", "e5241095f728aef8",
              "0cb54d32611c4ccb", "71fadd9fd8c35a99"]


def test_items_record_split_and_every_gold_part_checks() -> None:
    names = SYMBOLIC
    for item in compose_items(_spec(3)):
        assert item.split == split_of(item.skills, names, 0)
        assert item.choices[item.gold_index] == item.answer
        assert len(set(item.choices)) == len(item.choices)
        parts = split_parts(item.skill_set, item.mode, item.answer)
        assert parts == item.part_answers
        assert item.prompt.endswith(render([get_skill("symbolic", n) for n in item.skills], item.inputs,
                                           item.mode).prompt)


def test_heldout_split_is_half_of_each_k() -> None:
    for k, expected in ((2, 14), (3, 28), (4, 35)):
        assert count_seen(SYMBOLIC, k, seed=0) == expected
    assert split_of(("rev", "sft"), SYMBOLIC, 0) == split_of(("sft", "rev"), SYMBOLIC, 0)


def test_no_heldout_tuple_in_training_text() -> None:
    seen_k = defaultdict(int)
    for piece in itertools.islice(iter_pieces(TextSpec(), seed=5), 20_000):
        if len(piece.skills) > 1:
            assert split_of(piece.skills, SYMBOLIC, 0) == "seen", piece.text
            seen_k[len(piece.skills)] += 1
    assert set(seen_k) == {2, 3, 4}


def test_training_text_is_byte_identical_given_seed() -> None:
    a = [p.text for p in itertools.islice(iter_pieces(TextSpec(), seed=7), 500)]
    b = [p.text for p in itertools.islice(iter_pieces(TextSpec(), seed=7, start=0), 500)]
    c = [p.text for p in itertools.islice(iter_pieces(TextSpec(), seed=7, start=250), 250)]
    assert a == b and a[250:] == c


def _enumerate_text_distribution(spec: TextSpec) -> dict[str, float]:
    """P(text) by brute force over every random choice of the generator (independent of its bookkeeping)."""
    from skill_catalog.heldout import seen_sets
    from skill_catalog.symbolic import ALPHABET, WORD_LENGTH

    words = ["".join(w) for w in itertools.product(ALPHABET, repeat=WORD_LENGTH)]
    pool = skills("symbolic")
    probs: dict[str, float] = defaultdict(float)
    p_word = 1 / len(words)
    for s in pool:
        for mode, p_mode in (("single", 1 - spec.single_direct_prob), ("direct", spec.single_direct_prob)):
            for w in words:
                r = render([s], [w], mode)
                probs[r.prompt + r.answer] += spec.k_weights[0] * p_mode / len(pool) * p_word
    table = sorted(seen_sets(tuple(sorted(SYMBOLIC)), 2, spec.split_seed))
    for names in table:
        for order in itertools.permutations(names):
            tup = [get_skill("symbolic", n) for n in order]
            for mode, p_mode in zip(spec.modes, spec.mode_weights):
                for w in words:
                    r = render(tup, [w], mode)
                    probs[r.prompt + r.answer] += spec.k_weights[1] * p_mode / len(table) / 2 * p_word
    return probs


@pytest.mark.slow
def test_exact_entropy_matches_enumeration() -> None:
    spec = TextSpec(k_weights=(0.5, 0.5), modes=("chain", "direct"), mode_weights=(0.6, 0.4), single_direct_prob=0.3)
    probs = _enumerate_text_distribution(spec)
    assert math.isclose(sum(probs.values()), 1.0, rel_tol=1e-9)
    entropy = -sum(p * math.log(p) for p in probs.values())
    pieces = list(itertools.islice(iter_pieces(spec, seed=11), 4_000))
    for piece in pieces[:500]:  # the generator's log-prob of each piece is exactly log P(text)
        assert math.isclose(piece.log_prob, math.log(probs[piece.text]), rel_tol=1e-9)
    mc = -sum(p.log_prob for p in pieces) / len(pieces)
    sd = math.sqrt(sum((-p.log_prob - mc) ** 2 for p in pieces) / (len(pieces) - 1))
    assert abs(mc - entropy) < 4 * sd / math.sqrt(len(pieces))


@pytest.mark.parametrize("kw, message", [
    (dict(skills=("rev", "nope")), "unknown skill"),
    (dict(ks=(9,)), "k=9 is impossible"),
    (dict(items_per_cell=-1), "non-negative"),
])
def test_bad_composition_raises_catalog_error(kw: dict, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        list(compose_items(_spec(0, **kw)))


def test_chain_refuses_types_that_do_not_chain() -> None:
    natural = skills("natural")
    a, b = next((a, b) for a in natural for b in natural if a.name != b.name and not _chains(a, b) and not _chains(b, a))
    spec = CompositionSpec("natural", skills=(a.name, b.name), ks=(2,), modes=("chain",), items_per_cell=1)
    with pytest.raises(CatalogError, match="no (seen|heldout) chain tuple"):
        list(compose_items(spec))


def _chains(a, b) -> bool:
    from skill_catalog.skill import is_subtype

    return is_subtype(a.output_type, b.input_type)


def test_composes_up_to_eight_skills_in_both_modes() -> None:
    for skill_set in ("symbolic", "natural"):
        spec = CompositionSpec(skill_set, ks=(8,), modes=("chain", "conjunction"), items_per_cell=2,
                               single_items_per_skill=0)
        items = list(compose_items(spec))
        assert items and all(i.k == 8 and len(set(i.skills)) == 8 for i in items)
        for item in items:
            if item.mode == "chain":
                from skill_catalog.skill import is_subtype

                tup = [get_skill(skill_set, n) for n in item.skills]
                assert all(is_subtype(a.output_type, b.input_type) for a, b in zip(tup, tup[1:]))
                assert len(item.part_answers) == 8
