"""Greedy generation for `HFModel`: rows of any context length in one batch, a shared prefix computed once.

Contexts are grouped by a shared prefix (the few-shot exemplars, `generation_rows`) whose key/value cache is
computed once per window of groups, as the scoring path does (`TokenScoring._window_caches`). A batch
holds rows of any length: each row's cached prefix sits in the first key slots (right-padded to the longest
prefix of the batch), its own tokens are left-padded to the longest suffix, and the attention mask and
position ids make every real token see exactly its own context; on models with plain attention layers the rows
read their prefixes from the one shared cache through `shared_prefix_attention` instead of a copy each. Each step
keeps only the argmax, the gap to
the runner-up (a near-tie is counted) and whether the logits were finite; a row leaves the batch as soon as
it reaches EOS, its token limit or one of its stop strings (checked on the new text only).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, NamedTuple, Sequence

import torch

from harness.model.batching import low_padding_chunks, select_cache
from harness.model.generation_rows import GenRow, generation_failure, generation_rows, left_padded_inputs
from harness.model.protocol import GenerationRequest, GenerationResult, truncate_at_stop
from harness.model.forward_engine import last_logits_only, tolerance
from harness.model.growing_cache import GrowingLayer, growing_cache
from harness.model.shared_prefix_attention import SharedPrefix, plain_attention, shared_prefix

log = logging.getLogger(__name__)
NEAR_TIE = 1e-4
"""Top-2 logit gap below which a greedy step is a near-tie: batching may then pick the other token."""


CACHE_BUDGET = {"cpu": 2**27}
"""Most cached keys and values (floats, 512 MB) a generation batch may hold, by device type: every row holds
its own copy of the shared prefix, and on a CPU running out of memory kills the process instead of raising."""


class Greedy(NamedTuple):
    """A generated row."""

    result: GenerationResult
    """Its text, token count and error."""
    near_tie: bool
    """Whether some step's top-2 logits were within `NEAR_TIE` (another batch shape may pick the other)."""


class _Row:
    """Mutable state of one row while it generates."""

    def __init__(self, request: GenerationRequest, eos: int | None) -> None:
        self.request, self.eos = request, eos
        self.tokens: list[int] = []
        self.checked, self.near_tie, self.error, self.eos_seen = 0, False, None, False
        self.longest_stop = max((len(s) for s in request.stop), default=0)

    def step(self, token: int, gap: float, finite: bool, tokenizer: Any) -> bool:
        """Take one greedy token; True when the row is finished."""
        self.tokens.append(token)
        if not finite:
            self.error = "non-finite logits (NaN or inf) during generation"
            return True
        self.near_tie = self.near_tie or gap < NEAR_TIE
        self.eos_seen = token == self.eos
        if self.eos_seen or len(self.tokens) >= self.request.max_new_tokens:
            return True
        return bool(self.request.stop) and self._stopped(tokenizer)

    def _stopped(self, tokenizer: Any) -> bool:
        """Whether a stop string appeared in the text added since the last check (with the overlap a stop
        string spanning the boundary needs, and a margin for a multi-byte character completed late)."""
        text = tokenizer.decode(self.tokens, skip_special_tokens=True)
        start, self.checked = max(0, self.checked - self.longest_stop - 4), len(text)
        return truncate_at_stop(text[start:], self.request.stop)[1]

    def done(self, tokenizer: Any) -> Greedy:
        n = len(self.tokens)
        if self.error:
            return Greedy(GenerationResult("", n, self.error), self.near_tie)
        text, found = truncate_at_stop(tokenizer.decode(self.tokens, skip_special_tokens=True), self.request.stop)
        return Greedy(GenerationResult(text, n, stopped=found or self.eos_seen), self.near_tie)


PREFILL_ROWS = 8
"""Most rows per prefill forward: a batch (sorted by suffix length) prefills in chunks padded to their own longest
suffix, not the batch's (`low_padding_chunks`), and their caches are merged, left-padded, for decoding."""


def _chunked_prefill(model: Any, kwargs: dict[str, Any], cache_kw: str, caches: list | None, slots: list[int],
                     longest: int, room: int, shared: SharedPrefix | None = None
                     ) -> tuple[torch.Tensor, Any, list[int]]:
    """First-step logits, a `GrowingLayer` cache of the whole batch and each row's left padding in its own
    prefill chunk, prefilled in chunks of at most `PREFILL_ROWS` rows with little padding.

    Row b's keys sit at the same slots as in one batched prefill (`left_padded_inputs`); the padding slots
    between prefix and suffix of a chunk narrower than the batch hold zeros and are masked. With `shared`, the
    prefixes are read from it (`longest` is 0 and the caches hold the rows' own tokens only).
    """
    ids, mask, positions = kwargs["input_ids"], kwargs["attention_mask"], kwargs["position_ids"]
    n_rows, width = ids.shape
    parts, logits, suffixes, pads = [], [], mask[:, longest:].sum(1).tolist(), []
    for chunk in low_padding_chunks(suffixes, PREFILL_ROWS):
        rows = slice(chunk.start, chunk.stop)
        own = max(suffixes[rows])  # this chunk's longest suffix
        pads += [own - n for n in suffixes[rows]]
        chunk_mask = torch.cat([mask[rows, :longest], mask[rows, longest + width - own:]], dim=1)
        cache = growing_cache(0, caches, slots[rows], longest)
        if shared is not None:
            shared.use(range(chunk.start, chunk.stop))
        out = model(**{**kwargs, "input_ids": ids[rows, width - own:], "attention_mask": chunk_mask,
                       "position_ids": positions[rows, width - own:], cache_kw: cache})
        logits.append(out.logits[:, -1].float())
        parts.append((rows, own, _cache_of(out)))
    merged = growing_cache(room)
    for layer in range(len(parts[0][2].layers)):
        merged_layer = GrowingLayer(room)
        buffers = []
        for which in (0, 1):
            first = parts[0][2].layers[layer].buffers[which]
            buffer = first.new_zeros((n_rows, first.shape[1], longest + width + room, first.shape[-1]))
            for rows, own, cache in parts:
                held = cache.layers[layer].buffers[which]
                buffer[rows, :, :longest] = held[:, :, :longest]
                buffer[rows, :, longest + width - own:longest + width] = held[:, :, longest:longest + own]
            buffers.append(buffer)
        for _, _, cache in parts:  # free each chunk's layer as soon as it is merged
            cache.layers[layer] = None
        merged_layer.lazy_initialization(buffers[0][:, :, :0], buffers[1][:, :, :0])
        merged_layer.buffers, merged_layer.length = (buffers[0], buffers[1]), longest + width
        merged_layer.keys, merged_layer.values = buffers[0][:, :, :longest + width], buffers[1][:, :, :longest + width]
        merged.layers.append(merged_layer)
    if shared is not None:
        shared.use(range(n_rows))
    return torch.cat(logits), merged, pads


@torch.inference_mode()
def greedy_batch(model: Any, tokenizer: Any, batch: Sequence[GenRow], requests: Sequence[GenerationRequest],
                 caches: list | None, pad_token: int, cache_kw: str = "past_key_values",
                 first_logits: Callable[[torch.Tensor, list[int]], None] | None = None, grow: bool = False,
                 shared: bool = False) -> list[Greedy]:
    """Greedy continuations of a batch of rows of any lengths, each stopped on its own.

    Args:
        model: A transformers causal LM.
        tokenizer: Its tokenizer.
        batch: The rows; with a prefix, ``caches`` holds it in stacked slot ``row.slot``.
        requests: All requests (a row's stop strings and token limit are those of ``requests[row.index]``).
        caches: Per layer, stacked (keys, values) of the window's prefixes; None when no row has a prefix.
        pad_token: Token id of padding.
        cache_kw: Name of the model's cache argument.
        first_logits: Called with the float32 logits of the first step and each row's padded key slots in its
            prefill forward (one-time checks).
        grow: Cache keys and values in `GrowingLayer`s (only for models whose every layer is plain attention).
        shared: With `grow`, rows read their prefixes from ``caches`` through `shared_prefix_attention` instead of
            holding a copy each (only for models `supports_shared_prefix` accepts).

    Returns:
        One result per row; a row whose logits turn non-finite stops there with empty text and a reason.
    """
    longest = max(r.prefix for r in batch)
    if grow and shared and longest:
        state = SharedPrefix(caches, [r.slot for r in batch], [r.prefix for r in batch])
        with shared_prefix(model, state):
            return _greedy(model, tokenizer, batch, requests, caches, pad_token, cache_kw, first_logits, True, state)
    return _greedy(model, tokenizer, batch, requests, caches, pad_token, cache_kw, first_logits, grow, None)


def _greedy(model: Any, tokenizer: Any, batch: Sequence[GenRow], requests: Sequence[GenerationRequest],
            caches: list | None, pad_token: int, cache_kw: str,
            first_logits: Callable[[torch.Tensor, list[int]], None] | None, grow: bool, shared: SharedPrefix | None
            ) -> list[Greedy]:
    """`greedy_batch`; with `shared`, the rows' key slots and caches hold their own tokens only."""
    device = next(model.parameters()).device
    ids, mask, positions = left_padded_inputs(batch, pad_token, device)
    longest = max(r.prefix for r in batch)
    if shared is not None:
        mask, longest = mask[:, longest:], 0
    kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "position_ids": positions,
                              "use_cache": True, **last_logits_only(model)}
    slots = [r.slot for r in batch]
    if grow:
        room = max(requests[r.index].max_new_tokens for r in batch)
        logits, cache, pads = _chunked_prefill(model, kwargs, cache_kw, caches if longest else None, slots, longest,
                                               room, shared)
    else:
        if longest:
            kwargs[cache_kw] = select_cache(caches, slots, longest)
        out = model(**kwargs)
        logits, cache = out.logits[:, -1].float(), _cache_of(out)
    if first_logits is not None:
        if not grow:
            pads = [ids.shape[1] - (len(r.tokens) - r.prefix) for r in batch]
        with plain_attention(model):
            first_logits(logits, [pad + (longest - r.prefix if longest else 0) for pad, r in zip(pads, batch)])
    rows = [_Row(requests[r.index], tokenizer.eos_token_id) for r in batch]
    active = list(range(len(batch)))
    next_position = positions[:, -1] + 1
    while True:
        top = logits.topk(min(2, logits.shape[-1]), dim=-1)
        gaps = top.values[:, 0] - top.values[:, -1] if top.values.shape[-1] > 1 else torch.full_like(
            top.values[:, 0], math.inf)
        tokens = top.indices[:, 0]
        finite = torch.isfinite(logits).all(-1)
        keep = [j for j, (b, t, g, f) in enumerate(zip(active, tokens.tolist(), gaps.tolist(), finite.tolist()))
                if not rows[b].step(t, g, f, tokenizer)]
        if not keep:
            break
        if len(keep) < len(active):  # finished rows leave the batch and its cache
            index = torch.tensor(keep, dtype=torch.long, device=device)
            cache.batch_select_indices(index)
            tokens, mask, next_position = tokens[index], mask[index], next_position[index]
            active = [active[j] for j in keep]
            if shared is not None:
                shared.use(active)
        mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
        out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_position[:, None],
                    use_cache=True, **{cache_kw: cache})
        cache, next_position = _cache_of(out), next_position + 1
        logits = out.logits[:, -1].float()
    return [row.done(tokenizer) for row in rows]


class GreedyGeneration:
    """`generate_until` of `HFModel`; uses its model, settings, batching and prefix caches."""

    model: Any
    tokenizer: Any
    name: str
    settings: Any
    max_length_: int
    pad_token_: int
    prefix_token_: int | None
    prefix_reuse_: bool
    attention_span_: int | None
    shared_attention_: bool
    _cache_kw: str

    @torch.inference_mode()
    def generate_until(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Greedy generation: batches mix context lengths, a shared prefix is computed once, finished rows
        leave the batch; near-ties (top-2 logits within `NEAR_TIE`) are counted in ``near_ties_``."""
        results: list[GenerationResult | None] = [None] * len(requests)
        contexts: dict[int, list[int]] = {}
        for i, request in enumerate(requests):
            context = self.context_tokens(request.context)
            results[i] = generation_failure(context, request.max_new_tokens, self.max_length_)
            if results[i] is None:
                contexts[i] = context
        self._report("generation", 0, len(contexts))
        groups = generation_rows(contexts, self.prefix_reuse_, self.settings.prefix_min_tokens)
        self._in_windows(groups, lambda group: len(group[0]), lambda window: self._generate_window(window, requests, results),
                         self.batch_size_)
        return results  # type: ignore[return-value]

    def _generate_window(self, window: list[tuple[tuple[int, ...], list[GenRow]]],
                         requests: Sequence[GenerationRequest], results: list) -> None:
        """Generate every row of a window of groups, their prefixes' caches computed in one batched forward."""
        shared = [g for g, (key, _) in enumerate(window) if key]
        caches = self._window_caches([window[g][0] for g in shared]) if shared else None
        slots = {g: s for s, g in enumerate(shared)} if caches is not None else {}
        rows = [row._replace(prefix=row.prefix if g in slots else 0, slot=slots.get(g, 0))
                for g, (_, members) in enumerate(window) for row in members]
        rows.sort(key=lambda r: (r.prefix - len(r.tokens), r.prefix))  # longest suffix first: least padding
        done = sum(r is not None for r in results)

        def run(chunk: list[GenRow]) -> None:
            nonlocal done
            check = None if self.generation_verified_ else (
                lambda logits, pads: self._verify_generation(chunk, logits, pads))
            for row, greedy in zip(chunk, greedy_batch(self.model, self.tokenizer, chunk, requests, caches,
                                                       self.pad_token_, self._cache_kw, check,
                                                       grow=self.attention_span_ is None,
                                                       shared=self.shared_attention_)):
                results[row.index] = greedy.result
                self.near_ties_ += greedy.near_tie
            done += len(chunk)
            self._report("generation", done, len(results))

        longest = max(len(r.tokens) + requests[r.index].max_new_tokens for r in rows) if rows else 0
        scale = self._cache_scale(longest, None, CACHE_BUDGET)
        while rows:
            try:
                self._in_batches(rows, run, None if self.left_padding_ok_ else 1, scale=scale)
                return
            except _Redo:  # a check failed: the rest without the shortcut it turned off
                rows = [r if self.prefix_reuse_ else r._replace(prefix=0, slot=0)
                        for r in rows if results[r.index] is None]

    def _verify_generation(self, chunk: list[GenRow], logits: torch.Tensor, pads: list[int]) -> None:
        """Once per model: the first-step logits of the most padded row (padded key slots in its own prefill
        forward) against a plain forward of its whole context; a mismatch turns shared-prefix attention off (else
        prefix reuse, or, without reuse, batching) and redoes the batch. A batch of plain rows without padding has nothing to check (the next
        batch is checked)."""
        b = max(range(len(chunk)), key=lambda j: (pads[j] > 0, chunk[j].prefix > 0, pads[j]))
        if not pads[b] and not chunk[b].prefix:
            return  # plain rows, none padded: nothing that batching changes
        ids = torch.tensor([chunk[b].tokens], dtype=torch.long, device=logits.device)
        plain = self.model(input_ids=ids, use_cache=False, **last_logits_only(self.model)).logits[0, -1].float()
        error = float((torch.log_softmax(plain, -1) - torch.log_softmax(logits[b], -1)).abs().max())
        if not math.isfinite(error):
            return  # no verdict: the model itself is not finite here (the row reports it)
        if error <= tolerance(self.model.dtype):
            self.generation_verified_ = True
            return
        reason = f"batched generation changed first-step log-probs by {error:.1e}"
        if chunk[b].prefix and self.shared_attention_:
            log.warning("%s: %s; the prefix is copied into every row instead", self.name, reason)
            self.shared_attention_ = False
        elif chunk[b].prefix:
            self._disable_reuse(reason)
        else:
            log.warning("%s: %s; generating one row at a time", self.name, reason)
            self.left_padding_ok_ = False
        raise _Redo


class _Redo(Exception):
    """The batch must be redone without the shortcut that failed its check."""


def _cache_of(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


