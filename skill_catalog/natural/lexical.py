"""Lexical skills of the `natural` set: inflection, opposites, and numbers as English words.

Answers come from tables that include irregular forms ("mouse" -> "mice", "go" -> "went"); the
custom distractors are the regular forms a model that over-generalizes would give ("mouses", "goed").
"""
from __future__ import annotations

import random

from skill_catalog.natural import tables as t
from skill_catalog.natural import types as _types  # noqa: F401  (registers the value types first)
from skill_catalog.natural.checks import near_numbers, normalize_number, normalize_text, shuffled
from skill_catalog.skill import skill

PLURAL = t.lookup(t.NOUNS, "singular", "plural")
SINGULAR = t.lookup(t.NOUNS, "plural", "singular")
PAST = t.lookup(t.VERBS, "base", "past")
PARTICIPLE = t.lookup(t.VERBS, "base", "participle")
OPPOSITE = t.lookup(t.ADJECTIVES, "adjective", "opposite")
COMPARATIVE = t.lookup(t.ADJECTIVES, "adjective", "comparative")
SUPERLATIVE = t.lookup(t.ADJECTIVES, "adjective", "superlative")
NUMBER_OF_WORD = {word: str(value) for value, word in enumerate(t.NUMBER_WORDS)}

_KW = dict(skill_set="natural", family="lexical", normalize=normalize_text)


def _plural_distractors(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    return shuffled([x + "s", x + "es", x], rng)


@skill(
    instruction="Give the plural of {x}.", input_type="noun", output_type="plural_noun",
    distractors=_plural_distractors, **_KW,
)
def plural(x: str) -> str:
    """Plural of a noun, irregular ones included (mouse -> mice)."""
    return PLURAL[x.lower()]


def _singular_distractors(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    return shuffled([x, x[:-1], x[:-2]], rng)


@skill(
    instruction="Give the singular of {x}.", input_type="plural_noun", output_type="noun",
    distractors=_singular_distractors, **_KW,
)
def singular(x: str) -> str:
    """Singular of a plural noun (mice -> mouse)."""
    return SINGULAR[x.lower()]


def regular_past(verb: str) -> str:
    """The past tense the regular rule would give, right or not (go -> goed, try -> tried)."""
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ied"
    if _is_short_cvc(verb):
        return verb + verb[-1] + "ed"
    return verb + "ed"


def _is_short_cvc(word: str) -> bool:
    # One vowel and a consonant-vowel-consonant ending doubles the last letter (stop -> stopped).
    vowels = "aeiou"
    return (
        len(word) >= 3 and sum(ch in vowels for ch in word) == 1
        and word[-3] not in vowels and word[-2] in vowels and word[-1] not in vowels + "wxy"
    )


def _verb_distractors(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    # The over-regularized form first; then other inflections of the same verb.
    return (regular_past(x), *shuffled([x, x + "s"], rng))


@skill(
    instruction="Give the past tense of {x}.", input_type="verb", output_type="verb_form",
    distractors=_verb_distractors, **_KW,
)
def past_tense(x: str) -> str:
    """Simple past of a verb (go -> went)."""
    return PAST[x.lower()]


@skill(
    instruction="Give the past participle of {x}.", input_type="verb", output_type="verb_form",
    distractors=_verb_distractors, **_KW,
)
def past_participle(x: str) -> str:
    """Past participle of a verb (go -> gone)."""
    return PARTICIPLE[x.lower()]


def _echo(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    # Repeating the input is the likely miss; other adjectives' opposites follow from the generic pool.
    return (x,)


@skill(
    instruction="Give the opposite of {x}.", input_type="adjective", output_type="adjective",
    distractors=_echo, **_KW,
)
def opposite(x: str) -> str:
    """The antonym from a closed table of unambiguous pairs (hot -> cold)."""
    return OPPOSITE[x.lower()]


def _degree_distractors(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    return shuffled(["more " + x, "most " + x, x + "er", x + "est", x], rng)


@skill(
    instruction="Give the comparative form of {x}.", input_type="adjective", output_type="adjective_form",
    distractors=_degree_distractors, **_KW,
)
def comparative(x: str) -> str:
    """Comparative of an adjective (good -> better)."""
    return COMPARATIVE[x.lower()]


@skill(
    instruction="Give the superlative form of {x}.", input_type="adjective", output_type="adjective_form",
    distractors=_degree_distractors, **_KW,
)
def superlative(x: str) -> str:
    """Superlative of an adjective (good -> best)."""
    return SUPERLATIVE[x.lower()]


def _near_number_words(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    return tuple(t.NUMBER_WORDS[int(v)] for v in near_numbers(x, rng) if int(v) < len(t.NUMBER_WORDS))


@skill(
    instruction="Write {x} as an English word.", input_type="small_number", output_type="number_word",
    distractors=_near_number_words, **_KW,
)
def number_to_word(x: str) -> str:
    """English name of a number in 0..20 (7 -> seven)."""
    return t.NUMBER_WORDS[int(x)]


def _near_numbers(x: str, gold: str, rng: random.Random, n: int) -> tuple[str, ...]:
    return near_numbers(gold, rng)


@skill(
    instruction="Write {x} in digits.", input_type="number_word", output_type="small_number",
    distractors=_near_numbers, skill_set="natural", family="lexical",
    normalize=normalize_number,
)
def word_to_number(x: str) -> str:
    """The number an English number word names (seven -> 7)."""
    return NUMBER_OF_WORD[x.lower()]
