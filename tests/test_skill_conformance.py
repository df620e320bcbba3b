"""One conformance suite run over every skill of every set."""
from __future__ import annotations

import random

import pytest

from skill_catalog import skill_sets, skills
from skill_catalog.compose import CompositionSpec, compose_items
from skill_catalog.skill import distractors, value_type

ALL_SKILLS = [s for set_name in skill_sets() for s in skills(set_name)]


@pytest.mark.parametrize("skill", ALL_SKILLS, ids=lambda s: f"{s.skill_set}:{s.name}")
def test_skill_conforms(skill) -> None:
    assert skill.tag and " " not in skill.tag
    assert skill.instruction.count("{x}") == 1
    value_type(skill.input_type), value_type(skill.output_type)
    for i in range(30):
        x = skill.sample_input(random.Random(i))
        assert x == skill.sample_input(random.Random(i)), "sampler must depend only on its rng"
        gold = skill.apply(x)
        assert isinstance(gold, str) and gold.strip()
        assert skill.check(gold, gold) and skill.check(f"  {gold} ", gold)
        for wrong in distractors(skill, x, random.Random(i), 3):
            assert not skill.check(wrong, gold), f"distractor {wrong!r} accepted for {x!r} -> {gold!r}"
    single = CompositionSpec(skill.skill_set, skills=(skill.name,), ks=(1,), single_items_per_skill=3)
    for item in compose_items(single):
        assert item.skills == (skill.name,) and skill.check(item.part_answers[0], item.part_answers[0])
        assert item.choices[item.gold_index] == item.answer


def test_catalog_sizes() -> None:
    natural = skills("natural")
    assert len(natural) >= 30 and len({s.family for s in natural}) >= 6
    assert {s.name for s in skills("symbolic")} >= {"rev", "rot", "swp", "srt", "pmx", "sft", "mir", "sub"}
