"""Tree packing: rows that share leading tokens run as one row whose tokens are the nodes of their trie.

The choices of a multiple-choice item share the whole prompt; scored as separate rows, every choice
recomputes it. Packed, each distinct prefix is one token of a packed row, at position
``prefix_len + depth``, attending only to its ancestors (and to the cached group prefix) through a 4D
mask, so its logits equal those of the plain row. Whether a model honours custom 4D masks and
position ids is checked on a real row before packing is trusted (see `HFModel`).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch

MIN_PACK_WIDTH = 64
"""Packed rows may hold at least this many tokens (and at least twice the longest row of the group)."""
ROW_TOKENS_FLOOR = 512
"""A batch of packed rows holds as many tokens as a batch of plain rows of max(longest plain row, this
many tokens) would: wide packed rows get fewer rows per batch, so memory stays that of plain rows,
while rows this short (far from any memory limit) keep the full batch."""
MIN_SAVING = 0.1
"""Rows without a cached prefix are packed only when that runs at least this share fewer positions: a
tree mask gives up the plain causal attention kernels (rolling windows, for one, share almost nothing)."""


def attention_span(model: Any) -> tuple[int | None, str | None]:
    """How far back every layer of `model` attends: (None, None) for full causal attention everywhere,
    (w, None) when some layers see only the last w tokens (then rows up to w tokens pack exactly),
    (0, reason) when some layer is not attention at all (a recurrent state cannot be tree-packed).

    Read from the cache layers transformers builds for the model's config; from the config's
    ``sliding_window`` / ``attention_chunk_size`` where that is not available.
    """
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    try:
        layers = DynamicCache(config=model.config).layers
    except Exception:  # older transformers: no per-layer cache types
        windows = [getattr(model.config, key, None) for key in ("sliding_window", "attention_chunk_size")]
        windows = [w for w in windows if isinstance(w, int) and w > 0]
        return (min(windows) if windows else None), None
    windows = []
    for layer in layers:
        if type(layer) is DynamicLayer:
            continue
        window = getattr(layer, "sliding_window", None)
        if not isinstance(window, int) or window <= 0:
            return 0, f"layers of type {type(layer).__name__} are not plain attention"
        windows.append(window)
    return (min(windows) if windows else None), None


class PackedRow(NamedTuple):
    """One model input holding the trie of several rows, nodes in insertion order (parents first)."""

    tokens: list[int]
    """Token of each node."""
    parents: list[int]
    """Index of each node's parent in this packed row; -1 for a child of the (cached) group prefix."""
    depths: list[int]
    """Depth of each node below the group prefix; its position id is ``prefix_len + depth``."""
    ends: list[int]
    """One past the last node of each node's subtree: nodes are in depth-first order, so node j descends
    from node i exactly when ``i <= j < ends[i]``."""
    members: list[tuple[int, list[int]]]
    """(row index, node of each of the row's tokens after the prefix) for every row packed here."""


def pack_width(rows: Sequence[Sequence[int]], members: Sequence[int], start: int) -> int:
    """Most tokens a packed row of this group may hold."""
    return max(MIN_PACK_WIDTH, 2 * max(len(rows[r]) - start for r in members))


def _shared_tokens(a: Sequence[int], b: Sequence[int], start: int) -> int:
    """Length of the common prefix of `a[start:]` and `b[start:]`."""
    n = min(len(a), len(b))
    i = start
    while i < n and a[i] == b[i]:
        i += 1
    return i - start


def split_points(lengths: Sequence[int], shared: Sequence[int], width: int) -> list[int]:
    """Where to cut sorted rows into consecutive runs of at most `width` trie nodes, duplicating the
    fewest tokens (a cut before row i repeats its `shared[i]` tokens in the next packed row).

    Args:
        lengths: Tokens of each row after the cached prefix, rows in lexicographic order.
        shared: Tokens each row shares with the previous one (0 for the first).
        width: Most nodes per run; a longer row runs alone.

    Returns:
        Start index of every run, from 0.
    """
    n = len(lengths)
    new = [0]  # new[i]: nodes of rows before i, each counted after what it shares with its predecessor
    for length, common in zip(lengths, shared):
        new.append(new[-1] + length - common)
    best: list[tuple[int, int, int]] = [(0, 0, 0)] + [(0, 0, 0)] * n  # (duplicated tokens, runs, run start)
    for end in range(1, n + 1):
        options = []
        for begin in range(end - 1, -1, -1):
            nodes = new[end] - new[begin] + shared[begin]
            if nodes > width and begin < end - 1:
                break
            options.append((best[begin][0] + (shared[begin] if begin else 0), best[begin][1] + 1, begin))
        best[end] = min(options)
    starts, end = [], n
    while end > 0:
        end = best[end][2]
        starts.append(end)
    return starts[::-1]


def pack_rows(rows: Sequence[Sequence[int]], members: Sequence[int], start: int, width: int) -> list[PackedRow]:
    """Packs `rows[r][start:]` for r in `members` into packed rows of at most `width` nodes (a longer row
    gets one of its own), cutting where the fewest shared tokens must be repeated.

    Args:
        rows: Token rows.
        members: Indices of the rows to pack (packed in lexicographic order, which puts the nodes of
            every packed row in depth-first order).
        start: Tokens before it come from a cached prefix shared by all members.
        width: Most nodes per packed row.
    """
    ordered = sorted(members, key=rows.__getitem__)
    shared = [0] + [_shared_tokens(rows[a], rows[b], start) for a, b in zip(ordered, ordered[1:])]
    cuts = split_points([len(rows[r]) - start for r in ordered], shared, width) + [len(ordered)]
    return [_trie(rows, ordered[a:b], start) for a, b in zip(cuts, cuts[1:])]


def _trie(rows: Sequence[Sequence[int]], ordered: Sequence[int], start: int) -> PackedRow:
    """The packed row of `rows[r][start:]` for r in `ordered` (lexicographic order)."""
    packed = PackedRow([], [], [], [], [])
    children: dict[tuple[int, int], int] = {}
    for r in ordered:
        row, node, path = rows[r], -1, []
        for j in range(start, len(row)):
            child = children.get((node, row[j]))
            if child is None:
                child = children[(node, row[j])] = len(packed.tokens)
                packed.tokens.append(row[j])
                packed.parents.append(node)
                packed.depths.append(j - start)
                packed.ends.append(0)
            node = child
            path.append(node)
        for node in path:
            packed.ends[node] = len(packed.tokens)
        packed.members.append((r, path))
    return packed


def tree_inputs(
    packed: Sequence[PackedRow], prefix_lens: Sequence[int], pad_token: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input ids, position ids and the additive 4D attention mask ``(rows, 1, width, longest prefix + width)``.

    Row b continues a cached prefix of ``prefix_lens[b]`` tokens, held in the first key slots (slots past
    it belong to other rows' longer prefixes and are masked). Every node sees its prefix, its ancestors
    and itself; padding sees its prefix and itself (a row with nothing to attend to would be NaN in
    some kernels). Padded positions are never scored.
    """
    n_rows, width, longest = len(packed), max(len(p.tokens) for p in packed), max(prefix_lens)
    padding = [width - len(p.tokens) for p in packed]
    ids = torch.tensor([p.tokens + [pad_token] * n for p, n in zip(packed, padding)], dtype=torch.long)
    depths = torch.tensor([p.depths + [0] * n for p, n in zip(packed, padding)], dtype=torch.long)
    ends = torch.tensor([p.ends + list(range(len(p.tokens) + 1, width + 1)) for p in packed], dtype=torch.long)
    prefix = torch.tensor(prefix_lens, dtype=torch.long)[:, None]
    query, key = torch.arange(width)[:, None], torch.arange(width)[None, :]
    sees = (key <= query) & (query < ends[:, None, :])  # key is the query or one of its ancestors
    sees_prefix = (torch.arange(longest)[None, :] < prefix)[:, None, :].expand(n_rows, width, longest)
    allowed = torch.cat([sees_prefix, sees], dim=2)
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
    return ids.to(device), (depths + prefix).to(device), mask[:, None].to(device)
