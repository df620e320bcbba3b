"""Fact-lookup skills of the `natural` set: capitals and nationalities, chemical elements, young animals.

Only stable facts are tabled (no populations, leaders or currencies). Distractors come from the
same neighbourhood (a capital of the same region, the element next in the periodic table), which is
where a model that half-knows the fact goes wrong.
"""
from __future__ import annotations

import random

from skill_catalog.natural import tables as t
from skill_catalog.natural import types as _types  # noqa: F401  (registers the value types first)
from skill_catalog.natural.checks import near_numbers, normalize_number, normalize_text, shuffled
from skill_catalog.skill import skill

CAPITAL = t.lookup(t.COUNTRIES, "country", "capital")
COUNTRY_OF_CAPITAL = t.lookup(t.COUNTRIES, "capital", "country")
NATIONALITY = t.lookup(t.COUNTRIES, "country", "nationality")
REGION = t.lookup(t.COUNTRIES, "country", "region")
SYMBOL = t.lookup(t.ELEMENTS, "element", "symbol")
ELEMENT_OF_SYMBOL = t.lookup(t.ELEMENTS, "symbol", "element")
ATOMIC_NUMBER = t.lookup(t.ELEMENTS, "element", "atomic_number")
YOUNG = t.lookup(t.ANIMALS, "animal", "young")

_GEO = dict(skill_set="natural", family="geography", normalize=normalize_text)
_SCI = dict(skill_set="natural", family="science", normalize=normalize_text)


def _same_region(country: str, column: str, rng: random.Random) -> tuple[str, ...]:
    """`column` of the other countries in the region of `country`, shuffled."""
    region = REGION[country.lower()]
    rows = [row[column] for row in t.COUNTRIES if row["region"] == region and row["country"].lower() != country.lower()]
    return shuffled(rows, rng)


def _capital_distractors(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    return _same_region(x, "capital", rng)


@skill(
    instruction="Give the capital city of {x}.", input_type="country", output_type="city",
    distractors=_capital_distractors, **_GEO,
)
def capital_of(x: str) -> str:
    """Capital of a country (France -> Paris)."""
    return CAPITAL[x.lower()]


def _country_distractors(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    return _same_region(gold, "country", rng)


@skill(
    instruction="Name the country whose capital is {x}.", input_type="city", output_type="country",
    distractors=_country_distractors, **_GEO,
)
def country_of_capital(x: str) -> str:
    """Country of a capital city (Paris -> France)."""
    return COUNTRY_OF_CAPITAL[x.lower()]


def _nationality_distractors(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    return (x, *_same_region(x, "nationality", rng))


@skill(
    instruction="Give the adjective for people from {x}.", input_type="country", output_type="nationality",
    distractors=_nationality_distractors, **_GEO,
)
def nationality(x: str) -> str:
    """Nationality adjective of a country (France -> French)."""
    return NATIONALITY[x.lower()]


_BY_NUMBER = sorted(t.ELEMENTS, key=lambda row: int(row["atomic_number"]))


def _neighbour_elements(element: str, column: str, rng: random.Random) -> tuple[str, ...]:
    """`column` of the elements just before and after `element` in the table, nearest first."""
    names = [row["element"] for row in _BY_NUMBER]
    i = names.index(element.lower())
    near = [_BY_NUMBER[j][column] for j in (i - 1, i + 1) if 0 <= j < len(names)]
    far = [_BY_NUMBER[j][column] for j in (i - 2, i + 2) if 0 <= j < len(names)]
    return shuffled(near, rng) + shuffled(far, rng)


def _symbol_distractors(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    # Spelling-based guesses ("Ir" for iron) are the classic error for symbols not taken from English.
    return (x[:2].capitalize(), *_neighbour_elements(x, "symbol", rng), x[0].upper())


@skill(
    instruction="Give the chemical symbol of {x}.", input_type="element", output_type="chemical_symbol",
    distractors=_symbol_distractors, **_SCI,
)
def element_symbol(x: str) -> str:
    """Chemical symbol of an element (iron -> Fe)."""
    return SYMBOL[x.lower()]


def _element_distractors(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    return _neighbour_elements(gold, "element", rng)


@skill(
    instruction="Name the chemical element whose symbol is {x}.", input_type="chemical_symbol", output_type="element",
    distractors=_element_distractors, **_SCI,
)
def element_name(x: str) -> str:
    """Element named by a chemical symbol (Fe -> iron)."""
    return ELEMENT_OF_SYMBOL[x.lower()]


def _near_atomic_numbers(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    return near_numbers(gold, rng)


@skill(
    instruction="Give the atomic number of {x}.", input_type="element", output_type="positive",
    distractors=_near_atomic_numbers, skill_set="natural", family="science", normalize=normalize_number,
)
def atomic_number(x: str) -> str:
    """Atomic number of an element (iron -> 26)."""
    return ATOMIC_NUMBER[x.lower()]


def _young_distractors(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    return (x,)


@skill(
    instruction="Give the word for the young of {x}.", input_type="animal", output_type="young",
    distractors=_young_distractors, **_SCI,
)
def young_of(x: str) -> str:
    """Word for a young animal (cat -> kitten)."""
    return YOUNG[x.lower()]
