"""The shared token stream of a family: the same tokens in the same order for every size."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skill_catalog.training_text import Piece, TextEntropy, TextSpec, iter_pieces, stream_text, text_entropy
from transformers import PreTrainedTokenizerBase

CHUNK_PIECES = 20_000
"""Pieces tokenized per call (bounded memory; pieces never straddle a chunk)."""


@dataclass(frozen=True)
class TokenStream:
    """Token ids of a generated text plus its exact entropy."""

    ids: np.ndarray
    """Token ids (uint8 is enough for the reference vocabulary; stored as int64-compatible)."""
    entropy: TextEntropy
    """Exact irreducible loss of the text the ids encode."""
    n_pieces: int
    """Pieces drawn from the generator."""


def _encode(tokenizer: PreTrainedTokenizerBase, pieces: list[Piece], first: bool) -> list[int]:
    text = stream_text(pieces)
    return tokenizer(text if first else text[1:], add_special_tokens=False)["input_ids"]


def token_stream(spec: TextSpec, seed: int, n_tokens: int, tokenizer: PreTrainedTokenizerBase) -> TokenStream:
    """At least `n_tokens` ids of the stream drawn with `seed` (whole pieces only)."""
    pieces, ids, nats, n_bytes, drawn = iter_pieces(spec, seed), [], 0.0, 0, 0
    while len(ids) < n_tokens:
        chunk = [next(pieces) for _ in range(CHUNK_PIECES)]
        ids.extend(_encode(tokenizer, chunk, first=drawn == 0))
        nats -= sum(p.log_prob for p in chunk)
        n_bytes += len(stream_text(chunk).encode()) - (1 if drawn else 0)
        drawn += len(chunk)
    entropy = TextEntropy(nats=nats, n_tokens=len(ids), n_bytes=n_bytes)
    return TokenStream(np.asarray(ids, dtype=np.int64), entropy, drawn)


def heldout_text(spec: TextSpec, seed: int, n_pieces: int, tokenizer: PreTrainedTokenizerBase) -> tuple[str, TextEntropy]:
    """The held-out evaluation text (a fresh stream) and its exact entropy under `tokenizer`."""
    pieces = [p for _, p in zip(range(n_pieces), iter_pieces(spec, seed))]
    count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    return stream_text(pieces), text_entropy(pieces, count)
