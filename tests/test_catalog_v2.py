"""Properties of the v2 catalog: the downward-closed held-out split and the k-independent answer format."""
from __future__ import annotations

import itertools
import math
import re
from collections import Counter, defaultdict

import pytest

from skill_catalog import get_skill, skills
from skill_catalog.compose import CompositionSpec, compose_items
from skill_catalog.heldout import count_seen, family_groups, heldout_pairs, split_of
from skill_catalog.render import render
from skill_catalog.training_text import V2_TEXT, TextSpec, iter_pieces

V2 = tuple(s.name for s in skills("symbolic_v2"))
GROUPS = family_groups(skills("symbolic_v2"))


def test_v2_set_grows_v1_with_single_token_tags_outside_the_alphabet() -> None:
    from harness.zoo.tokenizer import build_tokenizer

    assert len(V2) == 16 and set(V2) >= {s.name for s in skills("symbolic")}
    assert all(set(s.tag) - set("abcdefgh") for s in skills("symbolic_v2"))  # a tag never hides inside a word
    tok = build_tokenizer("symbolic_v2")
    text = "\n" + "".join(p.text + "\n" for p in itertools.islice(iter_pieces(V2_TEXT, seed=3), 300))
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text and tok.unk_token_id not in ids
    assert all(len(tok(s.tag, add_special_tokens=False)["input_ids"]) == 1 for s in skills("symbolic_v2"))


def test_pairs_split_keeps_twenty_tuples_in_each_half_at_every_k() -> None:
    for k in range(2, 9):
        seen = count_seen(V2, k, seed=0, rule="pairs", groups=GROUPS)
        assert seen >= 20 and math.comb(len(V2), k) - seen >= 20, (k, seen)


def test_pairs_split_holds_a_tuple_out_iff_it_contains_a_heldout_pair() -> None:
    pairs = heldout_pairs(V2, 0, GROUPS)
    for k in (2, 3, 5, 8):
        for combo in itertools.islice(itertools.combinations(V2, k), 0, None, 97):
            contains = any(tuple(sorted(p)) in pairs for p in itertools.combinations(combo, 2))
            assert split_of(combo, V2, 0, "pairs", GROUPS) == ("heldout" if contains else "seen")


def test_heldout_pairs_draw_on_every_skill_family_alike() -> None:
    for seed in range(5):
        in_pairs = {n for p in heldout_pairs(V2, seed, GROUPS) for n in p}
        assert [len(in_pairs & set(g)) for g in GROUPS] == [round(0.625 * len(g)) for g in GROUPS], seed


def test_training_stream_never_shows_a_heldout_pair_and_shows_every_seen_pair() -> None:
    pairs = heldout_pairs(V2, V2_TEXT.split_seed, GROUPS)
    co_occur: set[tuple[str, str]] = set()
    distinct, slots = Counter(), Counter()
    for piece in itertools.islice(iter_pieces(V2_TEXT, seed=1234), 200_000):
        names = sorted(set(piece.skills))
        distinct[len(names)] += 1
        slots[len(piece.skills)] += 1
        co_occur.update(itertools.combinations(names, 2))
    all_pairs = set(itertools.combinations(sorted(V2), 2))
    assert not co_occur & pairs, "a held-out pair occurs together in a training piece"
    assert co_occur == all_pairs - pairs, "some seen pair never occurs in 200k pieces"
    assert set(distinct) == {1, 2, 3, 4} and min(distinct.values()) > 20_000
    assert set(slots) == set(range(1, 9)) and min(slots.values()) > 5_000  # the format at every length 1..2K


def _structure(text: str) -> str:
    """The text with its inputs and answers removed: what is left is every non-input random choice."""
    prompt = re.split(r"(?<=[=:])", text, maxsplit=1)[0]
    return re.sub(r"\b[a-h]{4}\b", "w", prompt)


def _p_slots(spec: TextSpec, k: int, m: int) -> float:
    q = spec.same_slots_prob
    return (q if m == k else (1 - q) / (spec.max_slots - k)) if q else 1 / (spec.max_slots - k + 1)


def _enumerate_structures(spec: TextSpec) -> dict[str, float]:
    """P(structure) by brute force over the generator's choices, counting accepted slot sequences by listing them."""
    from skill_catalog.heldout import seen_tuples

    pool = [get_skill(spec.skill_set, n) for n in spec.skills]
    probs: dict[str, float] = defaultdict(float)
    for k, p_k in enumerate(spec.k_weights, 1):
        sets = [(s.name,) for s in pool] if k == 1 else seen_tuples(tuple(sorted(spec.skills)), k, spec.split_seed,
                                                                     spec.split_rule, family_groups(pool))
        for chosen, m in itertools.product(sets, range(k, spec.max_slots + 1)):
            accepted = [seq for seq in itertools.product(chosen, repeat=m) if set(seq) == set(chosen)]
            modes = (zip(("single", "direct"), (1 - spec.single_direct_prob, spec.single_direct_prob)) if m == 1
                     else zip(spec.modes, spec.mode_weights))
            for mode, p_mode in modes:
                for seq in accepted:
                    tup = [get_skill(spec.skill_set, n) for n in seq]
                    r = render(tup, ["abcd"] * (m if mode == "conjunction" else 1), mode)
                    probs[_structure(r.prompt)] += p_k * _p_slots(spec, k, m) / len(sets) / len(accepted) * p_mode
    return probs


@pytest.mark.parametrize("same_slots_prob", [0.0, 0.4])
def test_slot_pieces_log_prob_matches_a_brute_force_count(same_slots_prob: float) -> None:
    spec = TextSpec(skill_set="symbolic_v2", skills=("rev", "rot", "swp", "sft"), k_weights=(0.5, 0.3, 0.2),
                    split_rule="pairs", max_slots=4, same_slots_prob=same_slots_prob)
    probs = _enumerate_structures(spec)
    assert math.isclose(sum(probs.values()), 1.0, rel_tol=1e-9)
    for piece in itertools.islice(iter_pieces(spec, seed=5), 3_000):
        n_inputs = len(re.findall(r"\b[a-h]{4}\b", re.split(r"[=:]", piece.text)[0]))
        assert math.isclose(piece.log_prob + n_inputs * math.log(8**4), math.log(probs[_structure(piece.text)]),
                            rel_tol=1e-9), piece.text


def test_v2_items_beyond_the_trained_k_have_k_distinct_skills_in_k_slots() -> None:
    spec = CompositionSpec("symbolic_v2", ks=(5, 6, 7, 8), modes=("conjunction", "chain"), items_per_cell=4,
                           split_rule="pairs")
    items = list(compose_items(spec))
    assert {(i.k, i.split) for i in items} == {(k, s) for k in (5, 6, 7, 8) for s in ("seen", "heldout")}
    for item in items:
        assert len(set(item.skills)) == item.k == len(item.part_answers)
        assert item.split == split_of(item.skills, V2, 0, "pairs", GROUPS)


def test_shots_axis_asks_the_same_queries_with_more_exemplars() -> None:
    spec = CompositionSpec("symbolic_v2", ks=(1, 3), items_per_cell=2, single_items_per_skill=1, split_rule="pairs",
                           shots_axis=(0, 1, 2))
    by_shots = defaultdict(list)
    for item in compose_items(spec):
        by_shots[item.n_shots].append(item)
    assert sorted(by_shots) == [0, 1, 2]
    assert len(by_shots[0]) == len(by_shots[1]) == len(by_shots[2]) > 0
    for a, b, c in zip(by_shots[0], by_shots[1], by_shots[2]):
        assert a.skills == b.skills == c.skills and a.inputs == b.inputs == c.inputs and a.answer == c.answer
        query = a.prompt[1:]  # the prompt prefix, then exemplars, then the query
        assert b.prompt.endswith(query) and c.prompt.endswith(query) and len(a.prompt) < len(b.prompt) < len(c.prompt)
        assert len({a.item_id, b.item_id, c.item_id}) == 3
