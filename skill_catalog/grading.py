"""Grades a model's answer to an item: exact match and partial credit, part by part.

Each part is compared with the checker of the skill that produced it, so normalisation (case,
quotes, spacing) follows the skill, and a composite is right only when every part is. Parts are
graded by position, and partial credit divides by the larger of the gold and predicted part counts,
so extra or repeated parts cost credit ("1 -> 1 -> 1 -> 1 -> 1 -> 1 -> 1 -> 1" against a four-part
gold starting with "1" earns 1/8, not 1/4).
"""
from __future__ import annotations

from typing import NamedTuple

from skill_catalog.compose import Item
from skill_catalog.render import split_parts
from skill_catalog.skill import get_skill


class Grade(NamedTuple):
    """The grade of one answer."""

    exact: bool
    """Every part right and no extra part."""
    parts_correct: int
    """Parts equal to their gold part under the part's checker."""
    parts_total: int
    """Gold parts of the item."""
    parts_predicted: int
    """Parts in the prediction."""

    @property
    def partial(self) -> float:
        """Partial credit: parts right in their position / max(gold parts, predicted parts)."""
        return self.parts_correct / max(self.parts_total, self.parts_predicted)


def part_skills(item: Item) -> tuple[str, ...]:
    """The skill whose checker grades each gold part (a direct chain is graded by its last skill)."""
    return item.skills[-1:] if item.mode == "direct" else item.skills


def grade(item: Item, prediction: str) -> Grade:
    """Grades `prediction` (the text generated after the prompt, before the stop string)."""
    predicted = split_parts(item.skill_set, item.mode, prediction)
    correct = 0
    for name, gold, guess in zip(part_skills(item), item.part_answers, predicted):
        correct += get_skill(item.skill_set, name).check(guess, gold)
    total = len(item.part_answers)
    return Grade(correct == total and len(predicted) == total, correct, total, len(predicted))
