"""Attention over one shared cached prefix: the rows of a batch that continue the same few-shot prefix read its
keys and values once per step (one batched matmul of all their queries), and the result is merged with each
row's attention over its own keys and values by log-sum-exp (the online-softmax merge).

Without it every row carries its own copy of the prefix in its cache and reads it in every decoding step, which
on a CPU is memory-bound (a third of a decoding step on a 135M Llama at 350 cached tokens). The function is
registered with transformers' `AttentionInterface` under `NAME`; while `shared_prefix` is active the model's
config names it, and each row's cache holds only its own tokens.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch

NAME = "harness_shared_prefix"
"""The attention implementation's registered name."""


class SharedPrefix:
    """The window's stacked prefix caches and which prefix (and how much of it) each row of the batch reads."""

    def __init__(self, caches: list, slots: Sequence[int], lengths: Sequence[int]) -> None:
        """
        Args:
            caches: Per layer, stacked (keys, values) of the window's prefixes, ``(prefixes, kv heads, time, dim)``.
            slots: Per row of the batch, which stacked prefix it continues.
            lengths: Per row, how many leading positions of that prefix it reads (0: none).
        """
        self.caches = caches
        self.slots, self.lengths = list(slots), list(lengths)
        self.use(range(len(self.slots)))

    def use(self, rows: Sequence[int]) -> None:
        """The rows of the next forward: a subset of the batch, in this order (a prefill chunk, or the rows still
        generating after `keep`)."""
        device = self.caches[0][0].device
        self.groups: list[tuple[int, torch.Tensor | slice, int, torch.Tensor | None]] = []
        by_slot: dict[int, list[int]] = {}
        for j, row in enumerate(rows):
            if self.lengths[row]:
                by_slot.setdefault(self.slots[row], []).append(j)
        for slot, members in by_slot.items():
            lengths = [self.lengths[rows[j]] for j in members]
            width = max(lengths)
            consecutive = members == list(range(members[0], members[0] + len(members)))
            index = slice(members[0], members[-1] + 1) if consecutive else torch.tensor(members, device=device)
            valid = None
            if min(lengths) < width:  # members sharing less of the prefix read only its first slots
                valid = torch.arange(width, device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]
            self.groups.append((slot, index, width, valid))


_ACTIVE: list[SharedPrefix] = []
_BEFORE: list[str | None] = []


@contextmanager
def shared_prefix(model: Any, state: SharedPrefix) -> Iterator[SharedPrefix]:
    """Within the block, `model`'s attention reads `state`'s prefixes (its cache must hold only the rows' own
    tokens, its attention mask and positions those of the rows' own tokens after their prefixes)."""
    _register()
    config = model.config
    before = config._attn_implementation
    config._attn_implementation = NAME
    _ACTIVE.append(state)
    _BEFORE.append(before)
    try:
        yield state
    finally:
        _ACTIVE.pop()
        _BEFORE.pop()
        config._attn_implementation = before


@contextmanager
def plain_attention(model: Any) -> Iterator[None]:
    """Within a `shared_prefix` block: the model's own attention again (a plain forward of whole contexts)."""
    if not _BEFORE or model.config._attn_implementation != NAME:
        yield
        return
    model.config._attn_implementation = _BEFORE[-1]
    try:
        yield
    finally:
        model.config._attn_implementation = NAME


def supports_shared_prefix(model: Any) -> bool:
    """Whether this model's attention can be swapped: every attention module calls transformers' attention
    interface with its layer index, and no layer is a sliding window (checked by the caller) or soft-capped."""
    config = model.config
    if getattr(config, "attn_logit_softcapping", None) or getattr(config, "is_encoder_decoder", False):
        return False
    layers = [m for m in model.modules() if type(m).__name__.endswith("Attention") and hasattr(m, "layer_idx")]
    n = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    return bool(layers) and len(layers) == n and all(isinstance(m.layer_idx, int) for m in layers)


def shared_prefix_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                            **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Attention of `query` over the active shared prefix and the rows' own `key`/`value`.

    Args:
        module: The attention module (its ``layer_idx`` picks the prefix's layer).
        query: ``(batch, heads, queries, dim)``.
        key: The rows' own keys ``(batch, kv heads, own time, dim)`` (the cache's, without the prefix).
        value: Same shape as `key`.
        attention_mask: Additive ``(batch, 1, queries, own time)`` mask over the rows' own keys (eager mask).
        scaling: Softmax scale (default ``dim ** -0.5``).

    Returns:
        ``(batch, queries, heads, dim)`` outputs and no weights.
    """
    state = _ACTIVE[-1]
    b, h, q, d = query.shape
    hkv = key.shape[1]
    g = h // hkv
    scale = d ** -0.5 if scaling is None else scaling
    qg = query.reshape(b, hkv, g * q, d)  # query head i reads kv head i // g (as `repeat_kv`)
    scores = torch.matmul(qg, key.transpose(-1, -2)).float() * scale
    if attention_mask is not None:
        scores = (scores.view(b, hkv, g, q, -1) + attention_mask[:, :, None].float()).view(b, hkv, g * q, -1)
    m_own = scores.amax(-1, keepdim=True)
    e_own = torch.exp(scores - m_own)
    l_own = e_own.sum(-1, keepdim=True)
    o_own = torch.matmul(e_own.to(value.dtype), value).float()
    if not state.groups:
        return (o_own / l_own).to(query.dtype).view(b, hkv, g, q, d).reshape(b, h, q, d).transpose(1, 2).contiguous(), None
    keys, values = state.caches[module.layer_idx]
    m_pre = torch.full_like(m_own, float("-inf"))
    l_pre, o_pre = torch.zeros_like(l_own), torch.zeros_like(o_own)
    for slot, index, width, valid in state.groups:
        rows = qg[index]
        n = rows.shape[0]
        flat = rows.transpose(0, 1).reshape(hkv, n * g * q, d)  # every row's queries against the one prefix
        s = torch.matmul(flat, keys[slot, :, :width].transpose(-1, -2)).float() * scale
        if valid is not None:
            s = s.view(hkv, n, g * q, width).masked_fill(~valid[None, :, None, :], float("-inf")).view(hkv, -1, width)
        m = s.amax(-1, keepdim=True)
        e = torch.exp(s - m)
        o = torch.matmul(e.to(values.dtype), values[slot, :, :width]).float()
        m_pre[index] = m.view(hkv, n, g * q, 1).transpose(0, 1)
        l_pre[index] = e.sum(-1, keepdim=True).view(hkv, n, g * q, 1).transpose(0, 1)
        o_pre[index] = o.view(hkv, n, g * q, d).transpose(0, 1)
    top = torch.maximum(m_own, m_pre)
    a, c = torch.exp(m_pre - top), torch.exp(m_own - top)
    out = (o_pre * a + o_own * c) / (l_pre * a + l_own * c)
    return out.to(query.dtype).view(b, hkv, g, q, d).reshape(b, h, q, d).transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

    if NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(NAME, shared_prefix_attention)
    if NAME not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:  # an additive mask over the rows' own keys
        ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, eager_mask)
