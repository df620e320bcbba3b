"""Token-level batching for scoring: merged rows, shared-prefix groups, padding, cache expansion, gathering.

Rows are the distinct model inputs of a set of requests; causal logits of a prefix do not depend on
what follows, so one row can score several requests and a shared prefix can be computed once.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch

from harness.model import LoglikelihoodResult, failed_loglikelihood


GATHER_FLOATS = 2**24
"""Most vocabulary logits `gather` copies at once (64 MB in float32)."""


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
        kv: Per-layer (keys, values) of the prefix, for one row (a fresh copy per row goes into the cache).
        mask: Attention mask of the rows, on the model's device.
        prefix_len: Tokens in the prefix.
        cache_kw: Name of the model's cache argument (``past_key_values`` or ``cache``).
    """
    n_rows, width = mask.shape
    # Right padding keeps real tokens at positions prefix_len.. ; padded positions are never scored.
    cached = torch.ones((n_rows, prefix_len), dtype=mask.dtype, device=mask.device)
    return {
        cache_kw: select_cache(kv, [0] * n_rows, prefix_len),
        "use_cache": True,
        "attention_mask": torch.cat([cached, mask], 1),
        "position_ids": torch.arange(prefix_len, prefix_len + width, device=mask.device).repeat(n_rows, 1),
    }


def stack_caches(parts: Sequence[list], length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, the (keys, values) of several batched prefix forwards concatenated over rows, their
    time axis right-padded to `length` (padded slots are masked by whoever reads them)."""
    def padded(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, 0, 0, length - t.shape[2]))

    return [(torch.cat([padded(part[layer][0]) for part in parts]), torch.cat([padded(part[layer][1]) for part in parts]))
            for layer in range(len(parts[0]))]


def select_cache(stacked: list[tuple[torch.Tensor, torch.Tensor]], slots: Sequence[int], length: int) -> Any:
    """A fresh DynamicCache whose row b holds prefix ``slots[b]`` of `stacked`, cut to `length` time steps."""
    from transformers import DynamicCache

    index = torch.tensor(slots, dtype=torch.long, device=stacked[0][0].device)
    # A generator: DynamicCache copies each layer in, so a list would hold every layer twice at once.
    return DynamicCache((k.index_select(0, index)[:, :, :length], v.index_select(0, index)[:, :, :length])
                        for k, v in stacked)


def unsafe_cache_reason(cache: Any) -> str | None:
    """Why a prefix cache cannot be copied into a batch safely, or None when it can."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    if not isinstance(cache, DynamicCache):
        return f"cache type {type(cache).__name__} is not a DynamicCache"
    odd = [type(layer).__name__ for layer in cache.layers if type(layer) is not DynamicLayer]
    return f"cache layers of type {odd[0]} (sliding window, recurrent, ...)" if odd else None


def gather(
    logits: torch.Tensor, picks: Sequence[tuple[int, int, Sequence[int]]], requests: Sequence[TokenRequest]
) -> list[LoglikelihoodResult]:
    """Score requests from the logits of one forward pass, with one gather for all of them.

    Args:
        logits: ``(rows, positions, vocabulary)`` logits of the batch.
        picks: Per request to score, (request index, batch row, the row positions whose logits predict
            its continuation tokens, in order).
        requests: All token requests.

    Returns:
        One result per pick: the summed log-probability, whether every token is the argmax, the token
        count; NaN plus a reason when a scored position has non-finite logits.
    """
    rows, positions, targets, segments = [], [], [], []
    for s, (i, b, where) in enumerate(picks):
        continuation = requests[i].tokens[requests[i].n_context:]
        rows += [b] * len(continuation)
        positions += where
        targets += continuation
        segments += [s] * len(continuation)
    device = logits.device
    per_pick = torch.zeros((3, len(picks)), dtype=torch.float64, device=device)
    step = max(1, GATHER_FLOATS // logits.shape[-1])  # positions per pass: bounded temporaries for large vocabularies
    for start in range(0, len(targets), step):
        part = slice(start, start + step)
        chosen = logits[torch.tensor(rows[part], device=device), torch.tensor(positions[part], device=device)].float()
        target = torch.tensor(targets[part], dtype=torch.long, device=device)
        segment = torch.tensor(segments[part], dtype=torch.long, device=device)
        logprobs = torch.log_softmax(chosen, dim=-1).gather(-1, target[:, None]).squeeze(-1)
        per_pick[0].index_add_(0, segment, logprobs.double())
        per_pick[1].index_add_(0, segment, (chosen.argmax(-1) != target).double())
        per_pick[2].index_add_(0, segment, (~torch.isfinite(chosen).all(-1)).double())
    sums, misses, bad = per_pick.tolist()
    out = []
    for s, (i, _, where) in enumerate(picks):
        if bad[s]:
            out.append(failed_loglikelihood("non-finite logits (NaN or inf) at a scored position", len(where)))
        else:
            out.append(LoglikelihoodResult(sums[s], misses[s] == 0, len(where)))
    return out


def plain_positions(request: TokenRequest, prefix_len: int) -> range:
    """Positions of a plain row (starting after `prefix_len` cached tokens) that score `request`."""
    start = request.n_context - 1 - prefix_len
    return range(start, start + len(request.tokens) - request.n_context)
