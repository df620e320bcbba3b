"""Seeded split of unordered skill tuples into *seen* (may appear in training text) and *held out*.

Two rules. ``pairs`` (reference family v2) is downward closed: a seeded set of skill *pairs* is held
out and a tuple is held out iff it contains one of them, so a held-out tuple never occurs in training
text, whole or inside a larger piece, and every sub-pair of a seen tuple is trained. ``per_k`` (v1):
for every k >= 2 the unordered k-subsets of a skill set are ranked by a seeded content hash and the
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
SPLIT_RULES = ("per_k", "pairs")
HUB_FRACTION = 0.625
"""Held-out pairs are drawn among this share of the skills (10 of 16), taken from every group (skill
family) alike: concentrating them keeps >= 20 tuples free of held-out pairs up to k = 8 (spread over
all 16 skills, k = 8 keeps 1-21 for seeds 0-9), and stratifying keeps one family from owning them."""
Groups = tuple[tuple[str, ...], ...]
"""A partition of the skill names (e.g. by family); the ``pairs`` rule draws its hub from each part alike."""
PAIR_FRACTION = 0.2
"""Share of all pairs held out (24 of 120 for 16 skills)."""


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


def family_groups(pool: Sequence) -> Groups:
    """The names of `pool` (skills) grouped by their `family`, in a canonical order."""
    by_family: dict[str, list[str]] = {}
    for s in pool:
        by_family.setdefault(s.family, []).append(s.name)
    return tuple(tuple(sorted(names)) for _, names in sorted(by_family.items()))


def _hub(names: list[str], seed: int, groups: Groups) -> list[str]:
    parts = [sorted(set(g) & set(names)) for g in groups] if groups else [names]
    leftover = sorted(set(names) - {n for g in parts for n in g})
    hub = []
    for part in [p for p in parts if p] + ([leftover] if leftover else []):
        ranked = sorted(part, key=lambda n: _rank_hash(seed, ("hub", n)))
        hub += ranked[:round(HUB_FRACTION * len(part))]
    return sorted(hub)


@lru_cache(maxsize=64)
def heldout_pairs(all_names: tuple[str, ...], seed: int, groups: Groups = ()) -> frozenset[tuple[str, str]]:
    """The held-out pairs of the ``pairs`` rule: a seeded hub of skills (the same share of every group),
    then seeded pairs within it.

    Args:
        all_names: every skill name of the set (any order).
        seed: split seed.
        groups: a partition of the names (skill families, `family_groups`); empty: one group.
    """
    names = sorted(all_names)
    hub = _hub(names, seed, groups)
    if len(hub) < 2:
        hub = sorted(names, key=lambda n: _rank_hash(seed, ("hub", n)))[:2]
    if len(hub) < 2:
        return frozenset()
    n_pairs = min(max(1, round(PAIR_FRACTION * math.comb(len(names), 2))), math.comb(len(hub), 2))
    pairs = sorted(itertools.combinations(hub, 2), key=lambda p: _rank_hash(seed, ("pair", *p)))
    return frozenset(pairs[:n_pairs])


def has_heldout_pair(skill_names: Sequence[str], pairs: frozenset[tuple[str, str]]) -> bool:
    """True when two of the names form a held-out pair (the ``pairs`` rule's held-out test)."""
    return any(p in pairs for p in itertools.combinations(sorted(set(skill_names)), 2))


def split_of(skill_names: Sequence[str], all_names: Sequence[str], seed: int, rule: str = "per_k",
             groups: Groups = ()) -> str:
    """``"single"`` for one skill, else ``"seen"`` or ``"heldout"`` for the tuple's unordered set under `rule`
    (`groups`: the ``pairs`` rule's partition of the names, see `heldout_pairs`)."""
    key = tuple_key(skill_names)
    if len(key) == 1:
        return "single"
    if rule == "pairs":
        return "heldout" if has_heldout_pair(key, heldout_pairs(tuple(sorted(all_names)), seed, groups)) else "seen"
    if rule != "per_k":
        raise ValueError(f"unknown split rule {rule!r}; use one of {', '.join(SPLIT_RULES)}")
    seen = seen_sets(tuple(sorted(all_names)), len(key), seed)
    if seen is not None:
        return "seen" if key in seen else "heldout"
    return "seen" if _rank_hash(seed, key) < 2**63 else "heldout"


@lru_cache(maxsize=256)
def seen_tuples(all_names: tuple[str, ...], k: int, seed: int, rule: str = "per_k",
                groups: Groups = ()) -> tuple[tuple[str, ...], ...] | None:
    """The seen k-subsets (sorted) under `rule`, or None when they cannot be enumerated."""
    if rule == "per_k":
        seen = seen_sets(tuple(sorted(all_names)), k, seed)
        return None if seen is None else tuple(sorted(seen))
    if math.comb(len(all_names), k) > ENUMERATION_LIMIT:
        return None
    pairs = heldout_pairs(tuple(sorted(all_names)), seed, groups)
    return tuple(c for c in itertools.combinations(sorted(all_names), k) if not has_heldout_pair(c, pairs))


def count_seen(all_names: Sequence[str], k: int, seed: int, rule: str = "per_k", groups: Groups = ()) -> int | None:
    """Exact number of seen k-subsets, or None when the set is too large to enumerate."""
    seen = seen_tuples(tuple(sorted(all_names)), k, seed, rule, groups)
    return None if seen is None else len(seen)
