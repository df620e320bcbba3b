"""String skills of the `natural` set: letter-level edits of a word, and steps through the alphabet.

Answers are lowercase (a country like "France" reverses to "ecnarf"), and checking ignores case,
so the skills test spelling, not capitalization.
"""
from __future__ import annotations

import random
import string

from skill_catalog.natural import types as _types  # noqa: F401  (registers the value types first)
from skill_catalog.natural.checks import near_numbers, normalize_number, normalize_text, shuffled
from skill_catalog.skill import skill

VOWELS = "aeiou"
ALPHABET = string.ascii_lowercase

_WORD = dict(skill_set="natural", family="strings", input_type="word", normalize=normalize_text)
_ALPHA = dict(skill_set="natural", family="alphabet", normalize=normalize_text)


def _swap_middle(word: str) -> str:
    mid = len(word) // 2
    return word[: mid - 1] + word[mid] + word[mid - 1] + word[mid + 1 :] if len(word) > 2 else word


def _reverse_distractors(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    # The unreversed word and a near-miss with two middle letters swapped.
    return shuffled([x.lower(), _swap_middle(gold)], rng)


@skill(
    instruction="Write {x} with its letters in reverse order.", output_type="word",
    distractors=_reverse_distractors, **_WORD,
)
def reverse(x: str) -> str:
    """Reverse the letters (cat -> tac)."""
    return x.lower()[::-1]


def _sort_distractors(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    return shuffled([gold[::-1], _swap_middle(gold), x.lower()], rng)


@skill(
    instruction="Write the letters of {x} in alphabetical order.", output_type="word",
    distractors=_sort_distractors, **_WORD,
)
def sort_letters(x: str) -> str:
    """Sort the letters alphabetically (cat -> act)."""
    return "".join(sorted(x.lower()))


def _drop_vowels_distractors(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    word = x.lower()
    first_vowel = next((i for i, ch in enumerate(word) if ch in VOWELS), None)
    # Dropping only the first vowel, or treating y as a vowel, are the likely slips.
    partial = word if first_vowel is None else word[:first_vowel] + word[first_vowel + 1 :]
    return shuffled([partial, gold.replace("y", ""), word], rng)


@skill(
    instruction="Write {x} with every vowel (a, e, i, o, u) removed.", output_type="word",
    distractors=_drop_vowels_distractors, **_WORD,
)
def drop_vowels(x: str) -> str:
    """Remove the vowels a, e, i, o, u (table -> tbl)."""
    return "".join(ch for ch in x.lower() if ch not in VOWELS)


def _double_distractors(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    word = x.lower()
    return shuffled([word + word, word, "".join(ch + ch for ch in word[:-1]) + word[-1]], rng)


@skill(
    instruction="Write {x} with every letter doubled.", output_type="word", distractors=_double_distractors, **_WORD,
)
def double_letters(x: str) -> str:
    """Write each letter twice (cat -> ccaatt)."""
    return "".join(ch + ch for ch in x.lower())


def _rotate_distractors(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    word = x.lower()
    return shuffled([word[-1] + word[:-1], word, word[1:]], rng)


@skill(
    instruction="Move the first letter of {x} to the end.", output_type="word",
    distractors=_rotate_distractors, **_WORD,
)
def rotate_letters(x: str) -> str:
    """Move the first letter to the end (cat -> atc)."""
    word = x.lower()
    return word[1:] + word[:1]


def _second_letters(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    word = x.lower()
    return shuffled([word[1], word[-2]] if len(word) > 1 else [], rng)


@skill(instruction="Give the first letter of {x}.", output_type="letter", distractors=_second_letters, **_WORD)
def first_letter(x: str) -> str:
    """The first letter, lowercased (France -> f)."""
    return x[0].lower()


@skill(instruction="Give the last letter of {x}.", output_type="letter", distractors=_second_letters, **_WORD)
def last_letter(x: str) -> str:
    """The last letter (cat -> t)."""
    return x[-1].lower()


def _shift(letter: str, step: int) -> str:
    return ALPHABET[(ALPHABET.index(letter) + step) % len(ALPHABET)]


def _neighbour_letters(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    # Off-by-one in either direction, and the input itself.
    return shuffled([_shift(gold, 1), _shift(gold, -1), x], rng)


@skill(
    instruction="Give the letter after {x} in the alphabet, with a coming after z.",
    input_type="letter", output_type="letter", distractors=_neighbour_letters, **_ALPHA,
)
def next_letter(x: str) -> str:
    """The next letter, wrapping z to a (c -> d)."""
    return _shift(x, 1)


@skill(
    instruction="Give the letter before {x} in the alphabet, with z coming before a.",
    input_type="letter", output_type="letter", distractors=_neighbour_letters, **_ALPHA,
)
def previous_letter(x: str) -> str:
    """The previous letter, wrapping a to z (c -> b)."""
    return _shift(x, -1)


def _near_positions(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    # Off-by-one covers counting from zero, the commonest slip.
    return near_numbers(gold, rng)


@skill(
    instruction="Give the position of {x} in the alphabet, counting a as 1.",
    input_type="letter", output_type="position", distractors=_near_positions,
    skill_set="natural", family="alphabet", normalize=normalize_number,
)
def letter_position(x: str) -> str:
    """The 1-based alphabet position (c -> 3)."""
    return str(ALPHABET.index(x) + 1)


def _near_letters(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    return shuffled([_shift(gold, 1), _shift(gold, -1)], rng)


@skill(
    instruction="Give the letter whose position in the alphabet is {x}, counting a as 1.",
    input_type="position", output_type="letter", distractors=_near_letters, **_ALPHA,
)
def letter_at_position(x: str) -> str:
    """The letter at a 1-based position (3 -> c)."""
    return ALPHABET[int(x) - 1]
