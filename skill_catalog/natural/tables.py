"""The fact tables of the `natural` set, read once at import from the CSV files in `data/`.

Every lookup is keyed by the lowercased key and refuses duplicate keys, so each skill built on a
table is a function: one input, one gold answer.
"""
from __future__ import annotations

import csv
import io
from importlib import resources

from skill_catalog.errors import CatalogError

Row = dict[str, str]

NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
)
"""English names of 0..20, indexed by value."""
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
"""Days of the week in order; the cycle wraps from Sunday to Monday."""
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)
"""Months in calendar order; January is month 1."""


def read_rows(name: str) -> tuple[Row, ...]:
    """Reads `data/<name>.csv` as one dict per row, with surrounding spaces stripped.

    Args:
        name: The table's file name without the ``.csv`` suffix.
    """
    # importlib.resources rather than a path from __file__, so the tables load from a wheel too.
    text = resources.files(__package__).joinpath("data").joinpath(f"{name}.csv").read_text(encoding="utf-8")
    rows = tuple({k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(io.StringIO(text)))
    if not rows:
        raise CatalogError(f"table {name}.csv is empty; restore it from version control")
    return rows


def lookup(rows: tuple[Row, ...], key: str, value: str) -> dict[str, str]:
    """Maps each row's lowercased `key` column to its `value` column; raises on a repeated key.

    Args:
        rows: Rows from `read_rows`.
        key: The column read as input.
        value: The column returned as answer.
    """
    table: dict[str, str] = {}
    for row in rows:
        k = row[key].lower()
        if k in table:
            raise CatalogError(f"{key} {row[key]!r} appears twice in a table; a skill needs one answer per input")
        table[k] = row[value]
    return table


def column(rows: tuple[Row, ...], name: str) -> tuple[str, ...]:
    """The distinct values of one column, in first-seen order."""
    return tuple(dict.fromkeys(row[name] for row in rows))


NOUNS = read_rows("nouns")
"""Singular nouns with their plurals; every animal and every young animal is listed here."""
ANIMALS = read_rows("animals")
"""Animals with the word for their young."""
VERBS = read_rows("verbs")
"""Verbs with one accepted past tense and past participle (verbs with two common forms are left out)."""
ADJECTIVES = read_rows("adjectives")
"""Adjectives closed under `opposite`, with their comparative and superlative."""
COUNTRIES = read_rows("countries")
"""Single-word countries with a single-word capital, a nationality adjective, and a region."""
ELEMENTS = read_rows("elements")
"""Chemical elements with one accepted English spelling, their symbol and atomic number."""
