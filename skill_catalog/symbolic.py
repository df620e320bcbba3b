"""The `symbolic` skill set: length-preserving maps over 4-letter words of the alphabet a-h.

Each skill name is one token in the reference family's tokenizer, every skill maps a word to a word
of the same length (so any order chains), and all are checked by exact match. Measured to be
learnable by 150K-450K parameter models on 2 CPU cores (see the reference-family recipe).
"""
from __future__ import annotations

import random

from skill_catalog.skill import ValueType, register_type, skill

ALPHABET = "abcdefgh"
WORD_LENGTH = 4
SUBSTITUTION = dict(zip(ALPHABET, "dhagbecf"))
"""A fixed random letter substitution: a memorised 'lexicon' the model can only learn by heart."""


def sample_word(rng: random.Random) -> str:
    """A uniformly random word of `WORD_LENGTH` letters from `ALPHABET`."""
    return "".join(rng.choice(ALPHABET) for _ in range(WORD_LENGTH))


WORD = register_type(ValueType("word4", sample_word, support_size=len(ALPHABET) ** WORD_LENGTH))

_KW = dict(skill_set="symbolic", input_type="word4", output_type="word4")


@skill(family="positional", instruction="Reverse the letters of {x}.", **_KW)
def rev(x: str) -> str:
    """Reverse the word (abcd -> dcba)."""
    return x[::-1]


@skill(family="positional", instruction="Move the first letter of {x} to the end.", **_KW)
def rot(x: str) -> str:
    """Rotate left by one (abcd -> bcda)."""
    return x[1:] + x[:1]


@skill(family="positional", instruction="Swap the first and last letters of {x}.", **_KW)
def swp(x: str) -> str:
    """Swap the first and last letters (abcd -> dbca)."""
    return x if len(x) < 2 else x[-1] + x[1:-1] + x[0]


@skill(family="comparison", instruction="Sort the letters of {x} alphabetically.", **_KW)
def srt(x: str) -> str:
    """Sort the letters (cadb -> abcd)."""
    return "".join(sorted(x))


@skill(family="comparison", instruction="Replace each letter of {x} by the largest letter seen so far.", **_KW)
def pmx(x: str) -> str:
    """Running maximum (cadb -> ccdd)."""
    out, best = [], ""
    for ch in x:
        best = max(best, ch)
        out.append(best)
    return "".join(out)


@skill(family="character map", instruction="Shift each letter of {x} one step forward in a-h, wrapping h to a.", **_KW)
def sft(x: str) -> str:
    """Shift each letter by +1, cyclically in a-h (abch -> bcda)."""
    return "".join(ALPHABET[(ALPHABET.index(ch) + 1) % len(ALPHABET)] for ch in x)


@skill(family="character map", instruction="Mirror each letter of {x} within a-h (a<->h, b<->g, c<->f, d<->e).", **_KW)
def mir(x: str) -> str:
    """Mirror each letter (a<->h, b<->g, ...)."""
    return "".join(ALPHABET[len(ALPHABET) - 1 - ALPHABET.index(ch)] for ch in x)


@skill(family="character map", instruction="Replace each letter of {x} using the table abcdefgh -> dhagbecf.", **_KW)
def sub(x: str) -> str:
    """Fixed random substitution abcdefgh -> dhagbecf."""
    return "".join(SUBSTITUTION[ch] for ch in x)
