"""Arithmetic and digit skills of the `natural` set, on non-negative integers written in decimal.

Inputs are sampled in 0..20, but every skill is exact for any non-negative integer, because in a
chain the input is whatever the previous step produced (``square`` of 20 is 400).
"""
from __future__ import annotations

import random

from skill_catalog.natural import types as _types  # noqa: F401  (registers the value types first)
from skill_catalog.natural.checks import near_numbers, normalize_list, normalize_number, normalize_text
from skill_catalog.skill import skill

_ARITH = dict(skill_set="natural", family="arithmetic", input_type="number", normalize=normalize_number)
_DIGITS = dict(skill_set="natural", family="digits", input_type="number", normalize=normalize_number)


def _near(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    return near_numbers(gold, rng)


def _near_or_input(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    # Echoing the input back is a common failure of small models.
    return (x, *near_numbers(gold, rng))


@skill(instruction="Add one to {x}.", output_type="positive", distractors=_near_or_input, **_ARITH)
def successor(x: str) -> str:
    """x + 1 (7 -> 8)."""
    return str(int(x) + 1)


@skill(
    instruction="Subtract one from {x}.", input_type="positive", output_type="number", distractors=_near_or_input,
    skill_set="natural", family="arithmetic", normalize=normalize_number,
)
def predecessor(x: str) -> str:
    """x - 1 for a positive x (7 -> 6)."""
    return str(int(x) - 1)


@skill(instruction="Multiply {x} by two.", output_type="number", distractors=_near_or_input, **_ARITH)
def double(x: str) -> str:
    """2x (7 -> 14)."""
    return str(2 * int(x))


@skill(instruction="Add ten to {x}.", output_type="positive", distractors=_near_or_input, **_ARITH)
def add_ten(x: str) -> str:
    """x + 10 (7 -> 17)."""
    return str(int(x) + 10)


@skill(instruction="Multiply {x} by itself.", output_type="number", distractors=_near_or_input, **_ARITH)
def square(x: str) -> str:
    """x squared (7 -> 49)."""
    return str(int(x) ** 2)


@skill(instruction="Add up the digits of {x}.", output_type="number", distractors=_near, **_DIGITS)
def digit_sum(x: str) -> str:
    """Sum of the decimal digits (19 -> 10)."""
    return str(sum(int(d) for d in x))


def _other_digits(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    # The first digit is the likely confusion; near digits fill in for one-digit inputs.
    return (x[0], *(d for d in near_numbers(gold, rng) if int(d) <= 9))


@skill(instruction="Give the last digit of {x}.", output_type="digit", distractors=_other_digits, **_DIGITS)
def last_digit(x: str) -> str:
    """The units digit (17 -> 7)."""
    return x[-1]


@skill(instruction="Count the digits of {x}.", output_type="positive", distractors=_near, **_DIGITS)
def digit_count(x: str) -> str:
    """Number of decimal digits (17 -> 2)."""
    return str(len(x))


def _other_parity(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    return ("odd" if gold == "even" else "even",)


@skill(
    instruction="Say whether {x} is even or odd.", output_type="parity", distractors=_other_parity,
    skill_set="natural", family="digits", input_type="number", normalize=normalize_text,
)
def parity(x: str) -> str:
    """"even" or "odd" (7 -> odd)."""
    return "even" if int(x) % 2 == 0 else "odd"


def _digit_list_distractors(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    digits = list(x)
    return (", ".join(reversed(digits)), ", ".join(sorted(digits)), x, ", ".join(digits[:-1]))


@skill(
    instruction="List the digits of {x}, separated by commas.", output_type="number_list",
    distractors=_digit_list_distractors, skill_set="natural", family="digits", input_type="number",
    normalize=normalize_list,
)
def digits_of(x: str) -> str:
    """The decimal digits as a list (407 -> 4, 0, 7)."""
    return ", ".join(x)
