"""Seeded split of unordered skill tuples into *seen* (may appear in training text) and *held out*.

For every k >= 2 the unordered k-subsets of a skill set are ranked by a seeded content hash and the
first half (rounded down) is *seen*; the rest never appear together in training text. When there
are too many subsets to enumerate, a subset is seen when its hash falls in the lower half, which is
the same rule in expectation. The split depends only on (seed, skill names), never on a machine.
"""
from __future__ import annotations

import hashlib
import itertools
import math
from functools import lru_cache
from typing import Sequence

ENUMERATION_LIMIT = 100_000
"""Above this many k-subsets the split is decided per subset by its hash instead of by rank."""


def tuple_key(skill_names: Sequence[str]) -> tuple[str, ...]:
    """The canonical (sorted) form of a skill tuple: order does not change its split."""
    return tuple(sorted(skill_names))


def _rank_hash(seed: int, key: tuple[str, ...]) -> int:
    digest = hashlib.sha256(f"heldout-split|{seed}|{'+'.join(key)}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


@lru_cache(maxsize=256)
def seen_sets(all_names: tuple[str, ...], k: int, seed: int) -> frozenset[tuple[str, ...]] | None:
    """The seen k-subsets when they can be enumerated, else None (use the hash rule).

    Args:
        all_names: every skill name of the set.
        k: subset size (>= 2).
        seed: split seed.
    """
    if math.comb(len(all_names), k) > ENUMERATION_LIMIT:
        return None
    combos = sorted(itertools.combinations(sorted(all_names), k), key=lambda c: _rank_hash(seed, c))
    return frozenset(combos[: len(combos) // 2])


def split_of(skill_names: Sequence[str], all_names: Sequence[str], seed: int) -> str:
    """``"single"`` for one skill, else ``"seen"`` or ``"heldout"`` for the tuple's unordered set."""
    key = tuple_key(skill_names)
    if len(key) == 1:
        return "single"
    seen = seen_sets(tuple(sorted(all_names)), len(key), seed)
    if seen is not None:
        return "seen" if key in seen else "heldout"
    return "seen" if _rank_hash(seed, key) < 2**63 else "heldout"


def count_seen(all_names: Sequence[str], k: int, seed: int) -> int | None:
    """Exact number of seen k-subsets, or None when the set is too large to enumerate."""
    seen = seen_sets(tuple(sorted(all_names)), k, seed)
    return None if seen is None else len(seen)
