"""The `symbolic_v2` skill set: the 8 `symbolic` skills plus 8 more, 16 length-preserving maps of 4-letter words.

Reference family v2 holds out skill *pairs* (`skill_catalog.heldout`), which needs more skills than v1
so that both halves keep >= 20 tuples up to k = 8. Every new skill is exact, maps a word of a-h to a
word of the same length (so any order chains), and has a 3-character tag with a letter outside a-h,
so the character tokenizer never reads a tag inside a word. The v1 set stays untouched: its
tokenizer, split and training text are those of the shipped family.
"""
from __future__ import annotations

from dataclasses import replace

from skill_catalog import symbolic
from skill_catalog.skill import register, skill

SKILL_SET = "symbolic_v2"
PARITY_PARTNER = dict(zip("abcdefgh", "badcfehg"))
"""Letter pairs a<->b, c<->d, e<->f, g<->h."""

for _v1 in (symbolic.rev, symbolic.rot, symbolic.swp, symbolic.srt, symbolic.pmx, symbolic.sft, symbolic.mir,
            symbolic.sub):
    register(replace(_v1, skill_set=SKILL_SET))

_KW = dict(skill_set=SKILL_SET, input_type="word4", output_type="word4")
_A = symbolic.ALPHABET


@skill(family="positional", instruction="Move the last letter of {x} to the front.", **_KW)
def rtr(x: str) -> str:
    """Rotate right by one (abcd -> dabc)."""
    return x[-1:] + x[:-1]


@skill(family="positional", instruction="Swap the letters of {x} in neighbouring pairs.", **_KW)
def xch(x: str) -> str:
    """Swap letters 1<->2 and 3<->4 (abcd -> badc)."""
    return "".join(x[i + 1] + x[i] for i in range(0, len(x) - 1, 2)) + (x[-1] if len(x) % 2 else "")


@skill(family="positional", instruction="Swap the two middle letters of {x}.", **_KW)
def mid(x: str) -> str:
    """Swap the two middle letters (abcd -> acbd)."""
    j = len(x) // 2
    return x if len(x) < 4 else x[:j - 1] + x[j] + x[j - 1] + x[j + 1:]


@skill(family="comparison", instruction="Sort the letters of {x} in reverse alphabetical order.", **_KW)
def dsc(x: str) -> str:
    """Sort the letters descending (cadb -> dcba)."""
    return "".join(sorted(x, reverse=True))


@skill(family="comparison", instruction="Replace each letter of {x} by the smallest letter seen so far.", **_KW)
def pmn(x: str) -> str:
    """Running minimum (cadb -> caaa)."""
    out, best = [], "~"
    for ch in x:
        best = min(best, ch)
        out.append(best)
    return "".join(out)


@skill(family="character map", instruction="Shift each letter of {x} one step back in a-h, wrapping a to h.", **_KW)
def bck(x: str) -> str:
    """Shift each letter by -1, cyclically in a-h (abch -> habg)."""
    return "".join(_A[(_A.index(ch) - 1) % len(_A)] for ch in x)


@skill(family="character map", instruction="Shift each letter of {x} two steps forward in a-h, wrapping.", **_KW)
def skp(x: str) -> str:
    """Shift each letter by +2, cyclically in a-h (abgh -> cdab)."""
    return "".join(_A[(_A.index(ch) + 2) % len(_A)] for ch in x)


@skill(family="character map", instruction="Swap each letter of {x} with its partner (a<->b, c<->d, e<->f, g<->h).", **_KW)
def flp(x: str) -> str:
    """Swap letters in fixed pairs a<->b, c<->d, e<->f, g<->h (abce -> badf)."""
    return "".join(PARITY_PARTNER[ch] for ch in x)
