"""Training text for the reference family: a seeded stream of k-skill pieces with exact entropy.

Every piece is drawn by explicit random choices (k, mode, a *seen* skill set, its order, the
inputs), each with a known probability. The text determines those choices uniquely, so the sum of
their log-probabilities is exactly -log p(piece): the irreducible loss of the text is known, and a
model's excess cross-entropy is measured, not guessed. A held-out stream from the same generator
with another seed is the cross-entropy evaluation text.
"""
from __future__ import annotations

import hashlib
import math
import random
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, Sequence

from skill_catalog.errors import CatalogError
from skill_catalog.heldout import seen_sets
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


def _check(spec: TextSpec, pool: Sequence[Skill]) -> None:
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
        seen = seen_sets(names, k, spec.split_seed)
        if not seen:
            raise CatalogError(f"no enumerable seen tuples at k={k}; drop k={k} from k_weights")
        table[k] = sorted(seen)
    return table


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
    pool = skills(spec.skill_set)
    _check(spec, pool)
    if value_type(pool[0].input_type).support_size is None:
        raise CatalogError(f"type {pool[0].input_type!r} has no exact support size; exact entropy is unknown")
    by_name, table = {s.name: s for s in pool}, _seen_table(spec, pool)
    index = start
    while True:
        yield _piece(spec, by_name, table, random.Random(f"text|{seed}|{index}"))
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
    digest = hashlib.sha256(repr(sorted(asdict(spec).items())).encode())
    for _ in range(min(n_pieces, 2_000)):  # the first pieces pin the skills' behaviour and the templates
        digest.update(next(pieces).text.encode() + b"\n")
    digest.update(f"{seed}|{n_pieces}".encode())
    return digest.hexdigest()[:16]
