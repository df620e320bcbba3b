"""Calendar skills of the `natural` set: stepping through weekdays and months, and month numbers.

Weeks and years are cycles (Sunday is followed by Monday, December by January), so every step is
defined for every day and month.
"""
from __future__ import annotations

import random

from skill_catalog.natural import types as _types  # noqa: F401  (registers the value types first)
from skill_catalog.natural.checks import near_numbers, normalize_number, normalize_text, shuffled
from skill_catalog.natural.tables import MONTHS, WEEKDAYS
from skill_catalog.skill import skill

_KW = dict(skill_set="natural", family="calendar", normalize=normalize_text)


def _step(cycle: tuple[str, ...], name: str, offset: int) -> str:
    index = [item.lower() for item in cycle].index(name.lower())
    return cycle[(index + offset) % len(cycle)]


def _cycle_distractors(cycle: tuple[str, ...], x: str, gold: str, rng: random.Random) -> tuple[str, ...]:
    # The input itself and a step too far on either side.
    return shuffled([x, _step(cycle, gold, 1), _step(cycle, gold, -1)], rng)


def _day_distractors(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    return _cycle_distractors(WEEKDAYS, x, gold, rng)


def _month_distractors(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    return _cycle_distractors(MONTHS, x, gold, rng)


@skill(
    instruction="Give the day of the week after {x}.", input_type="weekday", output_type="weekday",
    distractors=_day_distractors, **_KW,
)
def next_day(x: str) -> str:
    """The following weekday, Sunday wrapping to Monday (Friday -> Saturday)."""
    return _step(WEEKDAYS, x, 1)


@skill(
    instruction="Give the day of the week before {x}.", input_type="weekday", output_type="weekday",
    distractors=_day_distractors, **_KW,
)
def previous_day(x: str) -> str:
    """The preceding weekday, Monday wrapping to Sunday (Friday -> Thursday)."""
    return _step(WEEKDAYS, x, -1)


@skill(
    instruction="Give the month after {x}.", input_type="month", output_type="month",
    distractors=_month_distractors, **_KW,
)
def next_month(x: str) -> str:
    """The following month, December wrapping to January (March -> April)."""
    return _step(MONTHS, x, 1)


@skill(
    instruction="Give the month before {x}.", input_type="month", output_type="month",
    distractors=_month_distractors, **_KW,
)
def previous_month(x: str) -> str:
    """The preceding month, January wrapping to December (March -> February)."""
    return _step(MONTHS, x, -1)


def _near_month_numbers(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    return near_numbers(gold, rng)


@skill(
    instruction="Give the position of {x} in the year, counting January as 1.", input_type="month",
    output_type="month_index", distractors=_near_month_numbers, skill_set="natural", family="calendar",
    normalize=normalize_number,
)
def month_number(x: str) -> str:
    """Position of a month in the year (March -> 3)."""
    return str([m.lower() for m in MONTHS].index(x.lower()) + 1)


def _near_months(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    return shuffled([_step(MONTHS, gold, 1), _step(MONTHS, gold, -1)], rng)


@skill(
    instruction="Name the month whose number is {x}, counting January as 1.", input_type="month_index",
    output_type="month", distractors=_near_months, **_KW,
)
def month_name(x: str) -> str:
    """Month at a 1-based position in the year (3 -> March)."""
    return MONTHS[int(x) - 1]
