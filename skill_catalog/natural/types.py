"""Value types of the `natural` set: what each skill reads and writes, with seeded samplers.

Types form a tree through `parent` (a `country` is a `word`, a `digit` is a `small_number`), so the
composer can chain skills whose output type is a subtype of the next skill's input type.
`conforms` states the exact shape of each type, for tests and for checking composed chains.
"""
from __future__ import annotations

import functools
import random
import re
from typing import Callable

from skill_catalog.natural import tables as t
from skill_catalog.errors import CatalogError
from skill_catalog.skill import ValueType, register_type

SMALL_MAX = 20
"""Largest number sampled as an input and named by `number_to_word`."""
LIST_LENGTHS = (3, 6)
"""Inclusive range of item counts a sampled number list has."""

_SHAPES: dict[str, Callable[[str], bool]] = {}


def conforms(value: str, type_name: str) -> bool:
    """True when `value` has the exact shape of the natural value type `type_name` (not its parents).

    Args:
        value: A candidate value, e.g. ``"France"``.
        type_name: A value type registered by this module, e.g. ``"country"``.
    """
    if type_name not in _SHAPES:
        raise CatalogError(f"{type_name!r} is not a natural value type; use one of: {', '.join(sorted(_SHAPES))}")
    return _SHAPES[type_name](value)


def _choice(values: tuple[str, ...]) -> Callable[[random.Random], str]:
    def sample(rng: random.Random) -> str:
        return rng.choice(values)

    return sample


def _number_range(low: int, high: int) -> Callable[[random.Random], str]:
    def sample(rng: random.Random) -> str:
        return str(rng.randint(low, high))

    return sample


def _is_number(value: str, low: int = 0, high: int | None = None) -> bool:
    # Canonical decimal only: "07" or "+7" are not values a skill ever produces.
    if not re.fullmatch(r"0|[1-9][0-9]*", value):
        return False
    return low <= int(value) and (high is None or int(value) <= high)


def _add_table_type(name: str, values: tuple[str, ...], parent: str | None = "word") -> None:
    members = frozenset(values)
    register_type(ValueType(name, _choice(values), parent=parent, support_size=len(values)))
    _SHAPES[name] = members.__contains__


def _add_number_type(name: str, low: int, high: int, parent: str | None, shape_high: int | None) -> None:
    register_type(ValueType(name, _number_range(low, high), parent=parent, support_size=high - low + 1))
    _SHAPES[name] = functools.partial(_is_number, low=low, high=shape_high)


def sample_number_list(rng: random.Random) -> str:
    """A comma-separated list of 3-6 numbers in 0..20, repeats allowed (``"3, 8, 1"``)."""
    count = rng.randint(*LIST_LENGTHS)
    return ", ".join(str(rng.randint(0, SMALL_MAX)) for _ in range(count))


def _is_number_list(value: str) -> bool:
    return all(_is_number(item, 0, SMALL_MAX) for item in value.split(", "))


def _is_word(value: str) -> bool:
    return value.isascii() and value.isalpha()


VOCABULARY = tuple(
    sorted({*t.column(t.NOUNS, "singular"), *t.column(t.VERBS, "base"), *t.column(t.ADJECTIVES, "adjective")})
)
"""Lowercase words sampled as plain `word` inputs."""

# Parents are registered before children (the registry checks this).
register_type(ValueType("word", _choice(VOCABULARY), support_size=len(VOCABULARY)))
_SHAPES["word"] = _is_word
_add_table_type("noun", t.column(t.NOUNS, "singular"))
_add_table_type("animal", t.column(t.ANIMALS, "animal"), parent="noun")
_add_table_type("young", t.column(t.ANIMALS, "young"), parent="noun")
_add_table_type("plural_noun", t.column(t.NOUNS, "plural"))
_add_table_type("verb", t.column(t.VERBS, "base"))
_add_table_type("verb_form", tuple(dict.fromkeys(t.column(t.VERBS, "past") + t.column(t.VERBS, "participle"))))
_add_table_type("adjective", t.column(t.ADJECTIVES, "adjective"))
_add_table_type(
    "adjective_form", t.column(t.ADJECTIVES, "comparative") + t.column(t.ADJECTIVES, "superlative")
)
_add_table_type("number_word", t.NUMBER_WORDS)
_add_table_type("country", t.column(t.COUNTRIES, "country"))
_add_table_type("city", t.column(t.COUNTRIES, "capital"))
_add_table_type("nationality", t.column(t.COUNTRIES, "nationality"))
_add_table_type("element", t.column(t.ELEMENTS, "element"))
_add_table_type("weekday", t.WEEKDAYS)
_add_table_type("month", t.MONTHS)
_add_table_type("parity", ("even", "odd"))
# Symbols are not words: "O" or "I" would leave nothing after dropping vowels.
_add_table_type("chemical_symbol", t.column(t.ELEMENTS, "symbol"), parent=None)
_add_table_type("letter", tuple("abcdefghijklmnopqrstuvwxyz"), parent=None)

# Numbers are unbounded (chains of `square` grow fast); samplers draw small ones only.
_add_number_type("number", 0, SMALL_MAX, parent=None, shape_high=None)
_add_number_type("positive", 1, SMALL_MAX, parent="number", shape_high=None)
_add_number_type("position", 1, 26, parent="positive", shape_high=26)
_add_number_type("month_index", 1, 12, parent="position", shape_high=12)
_add_number_type("small_number", 0, SMALL_MAX, parent="number", shape_high=SMALL_MAX)
_add_number_type("digit", 0, 9, parent="small_number", shape_high=9)

register_type(ValueType("number_list", sample_number_list))
_SHAPES["number_list"] = _is_number_list
