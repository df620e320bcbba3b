"""The rows of a greedy-generation batch: which requests cannot run, which share a cached prefix, and the
left-padded inputs of a batch (`generation.GreedyGeneration` runs them)."""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from harness.model.batching import common_prefix
from harness.model.protocol import GenerationResult


def generation_failure(context: list[int | None], max_new_tokens: int, max_length: int) -> GenerationResult | None:
    """The empty result of a request that cannot be generated, else None.

    Args:
        context: Context token ids (``[None]`` for an empty context without BOS/EOS token).
        max_new_tokens: The request's token limit.
        max_length: Maximum model inputs per row.
    """
    if context == [None] or max_new_tokens < 1:
        return GenerationResult("", 0, "empty context without BOS/EOS token, or max_new_tokens < 1")
    if len(context) + max_new_tokens > max_length:
        reason = f"too long: {len(context)} context + {max_new_tokens} new tokens"
        return GenerationResult("", 0, f"{reason} > max_length {max_length}")
    return None


class GenRow(NamedTuple):
    """One context to continue."""

    index: int
    """Index of its request."""
    tokens: tuple[int, ...]
    """Context token ids."""
    prefix: int = 0
    """Leading tokens served from a cached prefix (0: none)."""
    slot: int = 0
    """Which prefix of the window's stacked caches holds them."""


def generation_rows(contexts: dict[int, list[int]], reuse: bool, min_tokens: int
                    ) -> list[tuple[tuple[int, ...], list[GenRow]]]:
    """Contexts grouped under cached prefixes: each row takes from a cache the longest prefix it shares with
    a lexicographic neighbour (the last context token is always run: its logits give the first new token).

    Neighbours are cut into one group per run sharing their longest prefixes, so rows sharing all three few-shot
    exemplars are not held back to the shorter prefix a larger run shares; a run joins the previous group when
    recomputing its own prefix would cost more positions than its rows lose by reading the group's. A group
    computes its prefix once; members sharing less of it read its first slots. Rows sharing fewer than
    `min_tokens` form a group with an empty prefix.

    Args:
        contexts: Context token ids by request index.
        reuse: Use cached prefixes at all.
        min_tokens: Shortest shared prefix worth reusing.

    Returns:
        (cached prefix tokens, rows) per group, shortest prefix first.
    """
    order = sorted(contexts, key=lambda i: contexts[i])
    rows = [tuple(contexts[i]) for i in order]
    after = [common_prefix(a, b) for a, b in zip(rows, rows[1:])] + [0]
    before = [0] + after[:-1]
    best = [min(len(r) - 1, max(a, b)) if reuse else 0 for r, a, b in zip(rows, after, before)]
    plain, runs = [], []
    for j, row in enumerate(rows):
        if best[j] < min_tokens:
            plain.append(GenRow(order[j], row))
        elif runs and best[j - 1] >= min_tokens and min(before[j], len(row) - 1, len(rows[j - 1]) - 1) in (
                best[j], best[j - 1]):
            runs[-1].append(j)
        else:
            runs.append([j])
    groups: list[tuple[tuple[int, ...], list[GenRow]]] = []
    for run in runs:
        key = rows[max(run, key=best.__getitem__)][:max(best[j] for j in run)]
        members = [GenRow(order[j], rows[j], min(best[j], common_prefix(rows[j], key))) for j in run]
        if groups:  # join the previous group where its prefix serves these rows almost as well as their own
            joined = [m._replace(prefix=min(m.prefix, common_prefix(m.tokens, groups[-1][0]))) for m in members]
            if min(m.prefix for m in joined) >= min_tokens and sum(m.prefix for m in members) - sum(
                    m.prefix for m in joined) < len(key):
                groups[-1][1].extend(joined)
                continue
        groups.append((key, members))
    return sorted(([((), plain)] if plain else []) + groups, key=lambda group: len(group[0]))


def left_padded_inputs(batch: Sequence[GenRow], pad_token: int, device: torch.device
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input ids, attention mask (cached prefix slots included) and position ids of a batch.

    Key slots are ``[longest prefix][longest suffix]``: row b's prefix fills the first ``prefix`` slots,
    its suffix the last ones; the slots between are padding, masked, and do not advance its positions.
    """
    longest = max(r.prefix for r in batch)
    suffixes = [r.tokens[r.prefix:] for r in batch]
    width = max(len(s) for s in suffixes)
    ids = torch.full((len(batch), width), pad_token, dtype=torch.long)
    mask = torch.zeros((len(batch), longest + width), dtype=torch.long)
    positions = torch.zeros((len(batch), width), dtype=torch.long)
    for b, (row, suffix) in enumerate(zip(batch, suffixes)):
        pad = width - len(suffix)
        ids[b, pad:] = torch.tensor(suffix, dtype=torch.long)
        mask[b, :row.prefix] = 1
        mask[b, longest + pad:] = 1
        positions[b, pad:] = torch.arange(row.prefix, len(row.tokens))
    return ids.to(device), mask.to(device), positions.to(device)
