"""Answer normalizers and distractor helpers shared by the `natural` skill families.

Normalizers forgive what a reader would forgive (case, spacing, quotes, a final period, ``1,000``)
and nothing that changes the answer.
"""
from __future__ import annotations

import random
import re

_QUOTES = "\"'`\u201c\u201d\u2018\u2019"
_THOUSANDS = re.compile(r"[0-9]{1,3}(,[0-9]{3})+")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_LIST_SEPARATORS = re.compile(r"[,;\s]+")


def normalize_text(answer: str) -> str:
    """Lowercases, collapses whitespace, and strips surrounding quotes and a trailing period.

    Args:
        answer: A raw answer, e.g. ``' "Paris." '``.

    Returns:
        The canonical form, e.g. ``"paris"``.
    """
    text = " ".join(answer.split()).lower()
    previous = None
    # Quotes and a period can nest either way round ('"Paris."' or '"Paris".'): strip to a fixpoint.
    while text != previous:
        previous = text
        text = text.strip().strip(_QUOTES).rstrip(".!").strip()
    return text


def _canonical_number(text: str) -> str:
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    return str(int(text)) if _INTEGER.fullmatch(text) else text


def normalize_number(answer: str) -> str:
    """Like `normalize_text`, and writes an integer in canonical decimal (``"007"``, ``"1,000"``)."""
    return _canonical_number(normalize_text(answer))


def normalize_list(answer: str) -> str:
    """Canonical ``"a, b, c"`` form of a list of numbers, whatever separators or brackets it used."""
    text = normalize_text(answer).strip("[]() ")
    items = [item for item in _LIST_SEPARATORS.split(text) if item and item != "and"]
    return ", ".join(_canonical_number(item) for item in items)


def near_numbers(gold: str, rng: random.Random) -> tuple[str, ...]:
    """Non-negative numbers close to `gold`: off-by-one first, then off-by-two and off-by-ten.

    Args:
        gold: The correct answer in canonical decimal.
        rng: Orders the farther candidates.
    """
    value = int(gold)
    close = [value + 1, value - 1]
    far = [value + 2, value - 2, value + 10, value - 10]
    rng.shuffle(close)
    rng.shuffle(far)
    return tuple(str(v) for v in close + far if v >= 0)


def parse_list(value: str) -> list[int]:
    """The numbers of a canonical ``"a, b, c"`` list."""
    return [int(item) for item in value.split(",")]


def format_list(values: list[int]) -> str:
    """Writes numbers as a canonical ``"a, b, c"`` list."""
    return ", ".join(str(v) for v in values)


def shuffled(values: list[str], rng: random.Random) -> tuple[str, ...]:
    """A shuffled copy of `values` (the rng decides, so distractors stay deterministic)."""
    out = list(values)
    rng.shuffle(out)
    return tuple(out)
