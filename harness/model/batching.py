"""Token-level batching for scoring: merged rows, shared-prefix groups, padding, cache expansion, gathering.

Rows are the distinct model inputs of a set of requests; causal logits of a prefix do not depend on
what follows, so one row can score several requests and a shared prefix can be computed once.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import torch

from harness.model.protocol import LoglikelihoodResult, failed_loglikelihood



class TokenRequest(NamedTuple):
    """One continuation to score, as tokens."""

    tokens: tuple[int, ...]
    """Context + continuation; the model reads ``tokens[:-1]``. A negative last token ``-(s + 1)`` is a stop:
    scored as any token of stop set `s` (see `gather`)."""
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


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
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
        shared = common_prefix(prefix, candidate) if members else 0
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


PAD_SLACK = 0.125
"""Largest share of padding a forward of rows sorted by length may carry before it is split in two."""


def low_padding_chunks(lengths: Sequence[int], most: int, slack: float = PAD_SLACK) -> list[range]:
    """Consecutive chunks of at most `most` rows (sorted by length, either way) whose padding to their own
    longest row is at most `slack` of the chunk's padded positions (a row alone is always a chunk).

    One forward padded to its longest row wastes positions on the shorter ones: prefixes of different few-shot
    prompts differ by a hundred tokens, and a CPU forward's cost grows with every padded position.
    """
    chunks: list[range] = []
    start, width, total = 0, 0, 0
    for i, n in enumerate(lengths):
        wider = max(width, n)
        if i > start and (i - start >= most or wider * (i - start + 1) - (total + n) > slack * wider * (i - start + 1)):
            chunks.append(range(start, i))
            start, wider, total = i, n, 0
        width, total = wider, total + n
    if len(lengths) > start:
        chunks.append(range(start, len(lengths)))
    return chunks


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


class Scores(NamedTuple):
    """What one forward pass leaves for scoring: the states before the output layer, and that layer."""

    states: torch.Tensor
    """``(rows, positions, width)``: final hidden states, or the logits themselves when `head` is None."""
    head: Callable[[torch.Tensor], torch.Tensor] | None = None
    """Maps ``(n, width)`` states to ``(n, vocabulary)`` logits; applied a chunk of positions at a time."""
    vocab: int = 0
    """Logits per position (the vocabulary of the output layer)."""


CHUNK_LOGITS = 1 << 23
"""Logit values computed and log-softmaxed at once while gathering (32 MB in fp32): with `Scores.head`,
the working set of scoring is bounded by this, not by rows x positions x vocabulary."""


def _chunk_scores(logits: torch.Tensor, target: torch.Tensor, stop_sets: Sequence[torch.Tensor]
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per position: log-prob of its target, whether the target is the argmax, whether the logits are not finite.

    A negative target ``-(s + 1)`` stands for stop set `s`: its log-prob is that of any token of the set,
    and it is greedy when the argmax is in the set.
    """
    logprobs = torch.log_softmax(logits, dim=-1)
    chosen = logprobs.gather(-1, target.clamp(min=0)[:, None]).squeeze(-1)
    best = logits.argmax(-1)
    greedy = best == target
    for j in (target < 0).nonzero().flatten().tolist():
        ids = stop_sets[-int(target[j]) - 1]
        chosen[j] = torch.logsumexp(logprobs[j, ids], 0)
        greedy[j] = bool(torch.isin(best[j], ids))
    return chosen, greedy, ~torch.isfinite(logits).all(-1)


def gather(
    scores: Scores | torch.Tensor, picks: Sequence[tuple[int, int, Sequence[int]]], requests: Sequence[TokenRequest],
    stop_sets: Sequence[torch.Tensor] = (),
) -> list[LoglikelihoodResult]:
    """Score requests from one forward pass, computing logits only at the scored positions, a chunk at a time.

    Args:
        scores: The forward pass's `Scores` (or its ``(rows, positions, vocabulary)`` logits).
        picks: Per request to score, (request index, batch row, the row positions whose logits predict
            its continuation tokens, in order).
        requests: All token requests; a negative last token ``-(s + 1)`` is the stop set ``stop_sets[s]``.
        stop_sets: Token ids of each stop set, on the scores' device.

    Returns:
        One result per pick: the summed log-probability, whether every token is the argmax, the token
        count; NaN plus a reason when a scored position has non-finite logits.
    """
    if isinstance(scores, torch.Tensor):
        scores = Scores(scores, None, scores.shape[-1])
    rows, positions, targets, segments = [], [], [], []
    for s, (i, b, where) in enumerate(picks):
        continuation = requests[i].tokens[requests[i].n_context:]
        rows += [b] * len(continuation)
        positions += where
        targets += continuation
        segments += [s] * len(continuation)
    device = scores.states.device
    states = scores.states[torch.tensor(rows, device=device), torch.tensor(positions, device=device)]
    target = torch.tensor(targets, dtype=torch.long, device=device)
    segment = torch.tensor(segments, dtype=torch.long, device=device)
    per_pick = torch.zeros((3, len(picks)), dtype=torch.float64, device=device)
    step = max(1, CHUNK_LOGITS // max(1, scores.vocab or states.shape[-1]))
    for start in range(0, len(targets), step):
        chunk = states[start:start + step]
        logits = (scores.head(chunk) if scores.head is not None else chunk).float()
        logprobs, greedy, bad = _chunk_scores(logits, target[start:start + step], stop_sets)
        where = segment[start:start + step]
        per_pick[0].index_add_(0, where, logprobs.double())
        per_pick[1].index_add_(0, where, (~greedy).double())
        per_pick[2].index_add_(0, where, bad.double())
    sums, misses, bad = per_pick.tolist()
    out = []
    for s, (i, _, where) in enumerate(picks):
        if bad[s]:
            out.append(failed_loglikelihood("non-finite logits (NaN or inf) at a scored position", len(where)))
        else:
            out.append(LoglikelihoodResult(sums[s], misses[s] == 0, len(where)))
    return out


def logprob_gap(reference: Scores, ref_at: tuple[Sequence[int], Sequence[int]], other: Scores,
                other_at: tuple[Sequence[int], Sequence[int]]) -> float:
    """Largest |log-softmax difference| between `reference` and `other` at paired (rows, positions), computed a
    bounded chunk at a time (for the one-time checks of the scoring shortcuts).

    Returns:
        The difference; NaN when the reference is not finite there (no verdict), inf when only `other` is not.
    """
    def picked(scores: Scores, at: tuple[Sequence[int], Sequence[int]]) -> torch.Tensor:
        device = scores.states.device
        return scores.states[torch.tensor(list(at[0]), device=device), torch.tensor(list(at[1]), device=device)]

    def logprobs(scores: Scores, states: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax((scores.head(states) if scores.head is not None else states).float(), -1)

    a, b = picked(reference, ref_at), picked(other, other_at)
    step, worst = max(1, CHUNK_LOGITS // max(1, reference.vocab)), 0.0
    for start in range(0, len(a), step):
        ours, theirs = logprobs(reference, a[start:start + step]), logprobs(other, b[start:start + step])
        if not bool(torch.isfinite(ours).all()):
            return math.nan
        gap = float((ours - theirs).abs().max())
        worst = max(worst, gap if math.isfinite(gap) else math.inf)
    return worst


def plain_positions(request: TokenRequest, prefix_len: int) -> range:
    """Positions of a plain row (starting after `prefix_len` cached tokens) that score `request`."""
    start = request.n_context - 1 - prefix_len
    return range(start, start + len(request.tokens) - request.n_context)
