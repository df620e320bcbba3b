"""Training text for the reference family: a seeded stream of k-skill pieces with exact entropy.

Every piece is drawn by explicit random choices (k, mode, a *seen* skill set, its order, the
inputs), each with a known probability. The text determines those choices uniquely, so the sum of
their log-probabilities is exactly -log p(piece): the irreducible loss of the text is known, and a
model's excess cross-entropy is measured, not guessed. A held-out stream from the same generator
with another seed is the cross-entropy evaluation text.

Version 2 (`max_slots` > 0, the ``symbolic_v2`` set) decouples the answer format from the number of
skills: a piece draws k <= K distinct skills (K = len(k_weights)), then m slots in k..max_slots, and
fills the slots with a uniformly random sequence that uses each of the k skills at least once. The
slot sequence shown in the text determines m, the skill set and k, so the text still determines
every choice, and the answer format is trained at every length 1..max_slots while skill
*combinations* never exceed K.
"""
from __future__ import annotations

import hashlib
import math
import random
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, Sequence

from skill_catalog.errors import CatalogError
from skill_catalog.heldout import SPLIT_RULES, family_groups, seen_tuples
from skill_catalog.render import layout, render
from skill_catalog.skill import Skill, skills, value_type

TRAIN_SEED = 1234
"""Data seed of the reference family's training stream (shared by every size, as in Pythia)."""
HELDOUT_SEED = 99_991
"""Seed of the held-out stream used to measure cross-entropy."""


@dataclass(frozen=True)
class TextSpec:
    """The generator of training text."""

    skill_set: str = "symbolic"
    """Skill set; every skill must read and write one shared type so that any order composes."""
    k_weights: tuple[float, ...] = (0.40, 0.25, 0.20, 0.15)
    """Probability of k = 1, 2, ... (must sum to 1)."""
    modes: tuple[str, ...] = ("conjunction", "chain", "direct")
    """Composite modes for k >= 2."""
    mode_weights: tuple[float, ...] = (0.45, 0.45, 0.10)
    """Probability of each mode for k >= 2; `direct` is a negative control (composition without scratchpad)."""
    single_direct_prob: float = 0.10
    """Probability that a k = 1 piece uses the `direct` separator instead of `=`."""
    split_seed: int = 0
    """Seed of the seen/held-out split of skill tuples (items must use the same one)."""
    split_rule: str = "per_k"
    """``"per_k"`` (v1: half of the k-subsets per k) or ``"pairs"`` (v2: held-out pairs, downward closed)."""
    max_slots: int = 0
    """Answer slots per piece, up to this many (slots repeat the piece's skills); 0: one slot per skill (v1)."""
    same_slots_prob: float = 0.0
    """With `max_slots`: probability of exactly k slots for k skills (v1's pieces); otherwise the slots are
    uniform over k+1..max_slots. 0: uniform over k..max_slots."""
    skills: tuple[str, ...] = ()
    """Skill names to draw from; empty means every skill of the set."""


V1_DEFAULTS = {"split_rule": "per_k", "max_slots": 0, "same_slots_prob": 0.0, "skills": ()}
"""Fields added for v2, with the values that give v1's text; left out of hashes so v1 hashes never change."""


def spec_fields(spec: TextSpec) -> dict:
    """The spec as a dict, without v2 fields at their v1 values (what hashes and v1 manifests record)."""
    return {k: v for k, v in asdict(spec).items() if not (k in V1_DEFAULTS and v == V1_DEFAULTS[k])}


V2_TEXT = TextSpec(skill_set="symbolic_v2", split_rule="pairs", max_slots=8, same_slots_prob=0.5)
"""Reference family v2: 16 skills, held-out pairs, k <= 4 distinct skills in 1..8 answer slots; half the
pieces have one slot per skill, as in v1 (with slots uniform over k..8, only 5% of pieces are single
skills and a 450K pilot reached k = 1 exact match 0.22 after 2 000 steps, 0.76 with this law; README)."""


def text_spec_for(skill_set: str) -> TextSpec:
    """The training-text generator of a skill set's reference family (its held-out stream uses the same)."""
    return V2_TEXT if skill_set == V2_TEXT.skill_set else TextSpec(skill_set=skill_set)


@dataclass(frozen=True)
class Piece:
    """One training piece and the exact log-probability of drawing it."""

    text: str
    """Prompt plus answer, without the newline that follows it in the stream."""
    log_prob: float
    """Natural log of the probability that the generator emits exactly this text."""
    skills: tuple[str, ...]
    """Skill names in the piece, in order."""
    mode: str
    """Rendering mode of the piece."""


def _pool(spec: TextSpec) -> tuple[Skill, ...]:
    pool = skills(spec.skill_set)
    if not spec.skills:
        return pool
    by_name = {s.name: s for s in pool}
    missing = [n for n in spec.skills if n not in by_name]
    if missing or len(set(spec.skills)) != len(spec.skills):
        raise CatalogError(f"text spec skills must be distinct names of set {spec.skill_set!r}; check {missing}")
    return tuple(by_name[n] for n in spec.skills)


def _check(spec: TextSpec, pool: Sequence[Skill]) -> None:
    if spec.split_rule not in SPLIT_RULES:
        raise CatalogError(f"unknown split rule {spec.split_rule!r}; use one of {', '.join(SPLIT_RULES)}")
    if spec.max_slots and spec.max_slots <= len(spec.k_weights) and spec.same_slots_prob:
        raise CatalogError(f"max_slots {spec.max_slots} leaves no room above the largest k {len(spec.k_weights)}")
    if spec.max_slots and spec.max_slots < len(spec.k_weights):
        raise CatalogError(f"max_slots {spec.max_slots} is below the largest k {len(spec.k_weights)}; raise it")
    if not 0 <= spec.same_slots_prob < 1:
        raise CatalogError("same_slots_prob must be in [0, 1); fix the text spec")
    if abs(sum(spec.k_weights) - 1) > 1e-9 or abs(sum(spec.mode_weights) - 1) > 1e-9:
        raise CatalogError("k_weights and mode_weights must each sum to 1; fix the text spec")
    if len(spec.modes) != len(spec.mode_weights):
        raise CatalogError("modes and mode_weights differ in length; give one weight per mode")
    if len({(s.input_type, s.output_type) for s in pool}) != 1 or pool[0].input_type != pool[0].output_type:
        raise CatalogError(f"training text needs skills that all map one type to itself; set {spec.skill_set!r} does not")
    if len(spec.k_weights) > len(pool):
        raise CatalogError(f"k_weights allows k up to {len(spec.k_weights)} but the set has {len(pool)} skills")


def _seen_table(spec: TextSpec, pool: Sequence[Skill]) -> dict[int, list[tuple[str, ...]]]:
    names = tuple(sorted(s.name for s in pool))
    table = {}
    for k in range(2, len(spec.k_weights) + 1):
        seen = seen_tuples(names, k, spec.split_seed, spec.split_rule, family_groups(pool))
        if not seen:
            raise CatalogError(f"no enumerable seen tuples at k={k}; drop k={k} from k_weights")
        table[k] = list(seen)
    return table


def surjections(m: int, k: int) -> int:
    """Number of sequences of length m over k symbols that use every symbol (k! S(m, k))."""
    return sum((-1) ** j * math.comb(k, j) * (k - j) ** m for j in range(k + 1))


def _log_p_slots(spec: TextSpec, k: int, m: int) -> float:
    """log p(m slots | k skills)."""
    if not spec.same_slots_prob:
        return -math.log(spec.max_slots - k + 1)
    if m == k:
        return math.log(spec.same_slots_prob)
    return math.log(1 - spec.same_slots_prob) - math.log(spec.max_slots - k)


def _slot_piece(spec: TextSpec, by_name: dict[str, Skill], table: dict, rng: random.Random) -> Piece:
    """A v2 piece: k distinct skills spread over m >= k slots (each used at least once)."""
    k = rng.choices(range(1, len(spec.k_weights) + 1), weights=spec.k_weights)[0]
    log_p = math.log(spec.k_weights[k - 1])
    if spec.same_slots_prob and rng.random() < spec.same_slots_prob:
        m = k
    else:
        m = rng.randint(k + 1 if spec.same_slots_prob else k, spec.max_slots)
    log_p += _log_p_slots(spec, k, m)
    chosen = [rng.choice(sorted(by_name))] if k == 1 else list(rng.choice(table[k]))
    log_p -= math.log(len(by_name) if k == 1 else len(table[k]))
    while True:  # rejection: a uniformly random sequence among those that use every chosen skill
        slots = [rng.choice(chosen) for _ in range(m)]
        if len(set(slots)) == k:
            break
    log_p -= math.log(surjections(m, k))
    if m == 1:
        direct = rng.random() < spec.single_direct_prob
        mode = "direct" if direct else "single"
        log_p += math.log(spec.single_direct_prob if direct else 1 - spec.single_direct_prob)
    else:
        i = rng.choices(range(len(spec.modes)), weights=spec.mode_weights)[0]
        mode = spec.modes[i]
        log_p += math.log(spec.mode_weights[i])
    tup = tuple(by_name[n] for n in slots)
    n_inputs = m if mode == "conjunction" else 1
    vtype = value_type(tup[0].input_type)
    inputs = tuple(vtype.sample(rng) for _ in range(n_inputs))
    log_p -= n_inputs * math.log(vtype.support_size)
    rendered = render(tup, inputs, mode)
    return Piece(rendered.prompt + rendered.answer, log_p, tuple(slots), mode)


def _piece(spec: TextSpec, by_name: dict[str, Skill], table: dict, rng: random.Random) -> Piece:
    ks = range(1, len(spec.k_weights) + 1)
    k = rng.choices(ks, weights=spec.k_weights)[0]
    log_p = math.log(spec.k_weights[k - 1])
    if k == 1:
        tup = (rng.choice(list(by_name.values())),)
        direct = rng.random() < spec.single_direct_prob
        mode = "direct" if direct else "single"
        log_p += -math.log(len(by_name)) + math.log(spec.single_direct_prob if direct else 1 - spec.single_direct_prob)
    else:
        i = rng.choices(range(len(spec.modes)), weights=spec.mode_weights)[0]
        mode = spec.modes[i]
        chosen = list(rng.choice(table[k]))
        rng.shuffle(chosen)
        tup = tuple(by_name[n] for n in chosen)
        log_p += math.log(spec.mode_weights[i]) - math.log(len(table[k])) - math.lgamma(k + 1)
    n_inputs = k if mode == "conjunction" else 1
    vtype = value_type(tup[0].input_type)
    inputs = tuple(vtype.sample(rng) for _ in range(n_inputs))
    log_p -= n_inputs * math.log(vtype.support_size)
    rendered = render(tup, inputs, mode)
    return Piece(rendered.prompt + rendered.answer, log_p, tuple(s.name for s in tup), mode)


def iter_pieces(spec: TextSpec, seed: int, start: int = 0) -> Iterator[Piece]:
    """Yields pieces `start, start+1, ...` forever; piece i depends only on (seed, i)."""
    pool = _pool(spec)
    _check(spec, pool)
    if value_type(pool[0].input_type).support_size is None:
        raise CatalogError(f"type {pool[0].input_type!r} has no exact support size; exact entropy is unknown")
    by_name, table = {s.name: s for s in pool}, _seen_table(spec, pool)
    draw = _slot_piece if spec.max_slots else _piece
    index = start
    while True:
        yield draw(spec, by_name, table, random.Random(f"text|{seed}|{index}"))
        index += 1


def stream_text(pieces: Sequence[Piece], skill_set: str = "symbolic") -> str:
    """Joins pieces into stream text: every piece follows the layout's stop (a newline)."""
    stop = layout(skill_set).stop
    return stop + "".join(p.text + stop for p in pieces)


@dataclass(frozen=True)
class TextEntropy:
    """Exact irreducible loss of a finite text drawn from the generator."""

    nats: float
    """-sum of log p(piece) over the pieces: what a Bayes-optimal model pays on this text."""
    n_tokens: int
    """Tokens of the stream text under the given tokenizer."""
    n_bytes: int
    """UTF-8 bytes of the stream text."""

    @property
    def nats_per_token(self) -> float:
        """Entropy floor of this text in nats per token."""
        return self.nats / self.n_tokens

    @property
    def bits_per_byte(self) -> float:
        """Entropy floor of this text in bits per byte."""
        return self.nats / self.n_bytes / math.log(2)


def text_entropy(pieces: Sequence[Piece], count_tokens: Callable[[str], int], skill_set: str = "symbolic") -> TextEntropy:
    """The exact entropy of the stream text built from `pieces`, per token of `count_tokens`."""
    text = stream_text(pieces, skill_set)
    return TextEntropy(-sum(p.log_prob for p in pieces), count_tokens(text), len(text.encode()))


def text_hash(spec: TextSpec, seed: int, n_pieces: int) -> str:
    """Hash identifying a training text (its spec, seed and length) and the catalog's skills."""
    pieces = iter_pieces(spec, seed)
    digest = hashlib.sha256(repr(sorted(spec_fields(spec).items())).encode())
    for _ in range(min(n_pieces, 2_000)):  # the first pieces pin the skills' behaviour and the templates
        digest.update(next(pieces).text.encode() + b"\n")
    digest.update(f"{seed}|{n_pieces}".encode())
    return digest.hexdigest()[:16]
