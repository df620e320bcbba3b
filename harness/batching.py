"""Token-level batching for scoring: merged rows, shared-prefix groups, padding, cache expansion, gathering.

Rows are the distinct model inputs of a set of requests; causal logits of a prefix do not depend on
what follows, so one row can score several requests and a shared prefix can be computed once.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch

from harness.model import LoglikelihoodResult, failed_loglikelihood


class TokenRequest(NamedTuple):
    """One continuation to score, as tokens."""

    tokens: tuple[int, ...]
    """Context + continuation; the model reads ``tokens[:-1]``."""
    n_context: int
    """``tokens[n_context:]`` are scored, from the logits at ``n_context - 1`` on."""


class RowPlan(NamedTuple):
    """How a set of token requests is run."""

    rows: list[tuple[int, ...]]
    """Distinct model inputs, in lexicographic order."""
    uses: list[list[int]]
    """Per row, the indices of the requests scored from it."""
    groups: list[tuple[int, list[int]]]
    """(shared prefix length, row indices); length 0 means no cached prefix."""


def length_failure(request: TokenRequest, max_length: int) -> LoglikelihoodResult | None:
    """The NaN result of a request that cannot be scored (no continuation tokens, or too long), else None."""
    n = len(request.tokens) - request.n_context
    if n == 0:
        return failed_loglikelihood("the continuation encodes to no tokens")
    if len(request.tokens) - 1 > max_length:
        return failed_loglikelihood(f"too long: {len(request.tokens) - 1} input tokens > max_length {max_length}", n)
    return None


def merge_rows(
    inputs: Sequence[tuple[int, ...]], merge_prefixes: bool = True
) -> tuple[list[tuple[int, ...]], list[int]]:
    """Rows to run: identical inputs once and, with `merge_prefixes`, an input that is a prefix of another
    inside the longer one (causal logits of a prefix do not depend on what follows).

    Returns:
        The rows in lexicographic order, and the row index of each input.
    """
    order = sorted(set(inputs))
    rep = list(range(len(order)))
    # Sequences extending `order[j]` follow it directly in lexicographic order.
    for j in range(len(order) - 2, -1, -1):
        cur, nxt = order[j], order[j + 1]
        if merge_prefixes and len(nxt) > len(cur) and nxt[: len(cur)] == cur:
            rep[j] = rep[j + 1]
    kept = sorted(set(rep))
    compact = {old: new for new, old in enumerate(kept)}
    position = {seq: compact[rep[j]] for j, seq in enumerate(order)}
    return [order[j] for j in kept], [position[seq] for seq in inputs]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def prefix_groups(
    rows: Sequence[tuple[int, ...]], reusable: Sequence[int], min_tokens: int
) -> list[tuple[int, list[int]]]:
    """Group lexicographically sorted rows by a shared prefix of at least `min_tokens` tokens.

    Args:
        rows: Rows in lexicographic order.
        reusable: Per row, how many leading tokens may come from a cache (logits are needed after them).
        min_tokens: Shortest prefix worth reusing.

    Returns:
        (prefix length, row indices) pairs; rows without a useful shared prefix form one group of length 0.
    """
    groups: list[tuple[int, list[int]]] = []
    members: list[int] = []
    prefix: tuple[int, ...] = ()
    for r, row in enumerate(rows):
        candidate = row[: reusable[r]]
        shared = _common_prefix(prefix, candidate) if members else 0
        if members and shared >= min_tokens:
            members.append(r)
            prefix = prefix[:shared]
            continue
        if members:
            groups.append((len(prefix), members))
        members, prefix = [r], candidate
    if members:
        groups.append((len(prefix), members))
    plain = [r for p, g in groups if len(g) < 2 or p < min_tokens for r in g]
    shared_groups = [(p, g) for p, g in groups if len(g) >= 2 and p >= min_tokens]
    return ([(0, plain)] if plain else []) + shared_groups


def plan_rows(requests: Sequence[TokenRequest], valid: Sequence[int], reuse: bool, min_tokens: int) -> RowPlan:
    """Merge the inputs of the `valid` requests into rows and, with `reuse`, group rows by shared prefix.

    Args:
        requests: All token requests.
        valid: Indices of the requests to score.
        reuse: Merge prefix rows into longer ones and group rows that share a prefix.
        min_tokens: Shortest shared prefix worth reusing.
    """
    rows, row_of = merge_rows([requests[i].tokens[:-1] for i in valid], merge_prefixes=reuse)
    uses: list[list[int]] = [[] for _ in rows]
    for i, r in zip(valid, row_of):
        uses[r].append(i)
    reusable = [min(requests[i].n_context - 1 for i in u) for u in uses]
    if reuse:
        groups = prefix_groups(rows, reusable, min_tokens)
    else:
        groups = [(0, list(range(len(rows))))]
    return RowPlan(rows, uses, groups)


def pad_rows(rows: Sequence[Sequence[int]], pad_token: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids and their attention mask, on the CPU."""
    n_rows, width = len(rows), max(len(r) for r in rows)
    ids = torch.full((n_rows, width), pad_token, dtype=torch.long)
    mask = torch.zeros((n_rows, width), dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[b, : len(row)] = 1
    return ids, mask


def prefix_inputs(kv: list, mask: torch.Tensor, prefix_len: int, cache_kw: str) -> dict[str, Any]:
    """Forward arguments for right-padded rows (with `mask`) that continue a cached prefix of `prefix_len` tokens.

    Args:
        kv: Per-layer (keys, values) of the prefix, for one row.
        mask: Attention mask of the rows, on the model's device.
        prefix_len: Tokens in the prefix.
        cache_kw: Name of the model's cache argument (``past_key_values`` or ``cache``).
    """
    n_rows, width = mask.shape
    # Right padding keeps real tokens at positions prefix_len.. ; padded positions are never scored.
    cached = torch.ones((n_rows, prefix_len), dtype=mask.dtype, device=mask.device)
    return {
        cache_kw: batch_cache(kv, n_rows),
        "use_cache": True,
        "attention_mask": torch.cat([cached, mask], 1),
        "position_ids": torch.arange(prefix_len, prefix_len + width, device=mask.device).repeat(n_rows, 1),
    }


def batch_cache(kv: list, n_rows: int) -> Any:
    """A fresh DynamicCache holding the prefix for `n_rows` rows; forward calls grow it, never `kv`."""
    from transformers import DynamicCache

    # DynamicLayer.update concatenates, so the expanded views are copied and `kv` stays untouched.
    return DynamicCache([(k.expand(n_rows, -1, -1, -1), v.expand(n_rows, -1, -1, -1)) for k, v in kv])


def unsafe_cache_reason(cache: Any) -> str | None:
    """Why a prefix cache cannot be copied into a batch safely, or None when it can."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    if not isinstance(cache, DynamicCache):
        return f"cache type {type(cache).__name__} is not a DynamicCache"
    odd = [type(layer).__name__ for layer in cache.layers if type(layer) is not DynamicLayer]
    return f"cache layers of type {odd[0]} (sliding window, recurrent, ...)" if odd else None


def gather(logits: torch.Tensor, request: TokenRequest, prefix_len: int) -> LoglikelihoodResult:
    """Score one request from the logits of its row (which starts after `prefix_len` cached tokens)."""
    targets = request.tokens[request.n_context:]
    start = request.n_context - 1 - prefix_len
    window = logits[start:start + len(targets)]
    if not torch.isfinite(window).all():
        return failed_loglikelihood("non-finite logits (NaN or inf) at a scored position", len(targets))
    target = torch.tensor(targets, dtype=torch.long, device=window.device)
    logprobs = torch.log_softmax(window, dim=-1).gather(-1, target[:, None]).squeeze(-1)
    greedy = bool((window.argmax(-1) == target).all())
    return LoglikelihoodResult(float(logprobs.double().sum()), greedy, len(targets))
