"""The scoring engine of `HFModel`: token requests to log-probabilities with as few forward positions as possible.

Rows are the distinct model inputs (`batching.plan_rows`). Groups of rows sharing a prefix get that
prefix's key/value cache from one batched forward per window of groups; the rows after it are
tree-packed (`tree_packing`) so each distinct token prefix runs once, and packed rows of different
groups share forward passes. Both shortcuts are checked once per model against plain rows and
turned off, with a warning and a recorded reason, where a model does not reproduce plain scores.
Logits are computed only at the scored positions, a bounded chunk at a time (`output_head`), so memory
does not grow with rows x positions x vocabulary.
"""
from __future__ import annotations

import inspect
import logging
import math
from typing import Any, Callable, Sequence

import torch

from harness.model.batching import (
    RowPlan, Scores, TokenRequest, gather, length_failure, logprob_gap, low_padding_chunks, pad_rows, plain_positions,
    plan_rows, prefix_inputs, select_cache, stack_caches, unsafe_cache_reason,
)
from harness.model.hf_load import is_oom
from harness.model.memory_bounds import MemoryBounds
from harness.model.protocol import LoglikelihoodResult
from harness.model.output_head import head_error, narrowed_forward
from harness.model.tree_packing import MIN_SAVING, ROW_TOKENS_FLOOR, PackedRow, pack_rows, pack_width, tree_inputs
from skill_catalog.errors import UserError

log = logging.getLogger(__name__)
Packed = tuple[int, PackedRow]  # (group index in its window, packed row)


def tolerance(dtype: torch.dtype) -> float:
    """Largest log-prob difference a shortcut may make before it is turned off."""
    return 1e-4 if dtype == torch.float32 else 5e-2


def last_logits_only(model: Any) -> dict[str, int]:
    """``logits_to_keep=1`` where the model takes it (a forward then makes one row of vocabulary logits)."""
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}


class _UnsafeCache(Exception):
    """The model's cache cannot be batched or sliced safely."""


class TokenScoring(MemoryBounds):
    """Scoring methods of `HFModel`; they use its model, settings and the learned state set in its ``__init__``."""

    model: Any
    name: str
    settings: Any
    device_: torch.device
    max_length_: int
    batch_size_: int
    vocab_size_: int
    pad_token_: int
    prefix_reuse_: bool
    reuse_verified_: bool
    reuse_disabled_reason_: str | None
    packing_: bool
    packing_verified_: bool
    packing_disabled_reason_: str | None
    attention_span_: int | None
    head_: tuple[Any, Callable[[torch.Tensor], torch.Tensor]] | None
    head_verified_: bool
    head_disabled_reason_: str | None
    stop_sets_: list[torch.Tensor]
    _cache_kw: str
    progress: Callable[[str, int, int], None] | None
    phase_: str

    @torch.inference_mode()
    def _score_tokens(
        self, requests: Sequence[TokenRequest], batch_size: int | None, reuse: bool | None
    ) -> list[LoglikelihoodResult]:
        """Score token requests; `batch_size`/`reuse` override the settings (used by `drift`)."""
        reuse = self.prefix_reuse_ if reuse is None else reuse
        results: list[LoglikelihoodResult | None] = [length_failure(r, self.max_length_) for r in requests]
        valid = [i for i, failure in enumerate(results) if failure is None]
        plan = plan_rows(requests, valid, reuse, self.settings.prefix_min_tokens)
        # A window of groups holds at most one batch of prefix caches, as one scoring batch would; groups
        # sorted by prefix length pad their batched prefix forward least.
        size, groups = batch_size or self.batch_size_, sorted(plan.groups, key=lambda group: group[0])

        def score_window(window: list) -> None:
            packed = reuse and self.packing_ and self._score_packed(window, plan, requests, results, batch_size)
            if not packed:
                for prefix_len, members in window:
                    self._score_group(prefix_len, members, plan, requests, results, batch_size)

        self._in_windows(groups, lambda group: group[0], score_window, size)
        return results  # type: ignore[return-value]

    # ---- packed scoring ------------------------------------------------------------------------

    def _score_packed(self, window: list[tuple[int, list[int]]], plan: RowPlan, requests: Sequence[TokenRequest],
                      results: list, batch_size: int | None) -> bool:
        """Score a window of groups as tree-packed rows; False (nothing scored) where plain rows should."""
        rows = plan.rows
        span = self.attention_span_
        if span is not None and max(len(rows[r]) for _, members in window for r in members) > span:
            return False  # a sliding-window layer would see less of a longer row than a tree node does
        shared = [g for g, (prefix_len, _) in enumerate(window) if prefix_len]
        caches = self._window_caches([rows[window[g][1][0]][:window[g][0]] for g in shared]) if shared else None
        slots = {g: s for s, g in enumerate(shared)} if caches is not None else {}
        starts = [prefix_len if g in slots else 0 for g, (prefix_len, _) in enumerate(window)]
        packed = [(g, row) for g, (_, members) in enumerate(window)
                  for row in pack_rows(rows, members, starts[g], pack_width(rows, members, starts[g]))]
        plain = sum(len(rows[r]) - starts[g] for g, (_, members) in enumerate(window) for r in members)
        if not slots and sum(len(p.tokens) for _, p in packed) > (1 - MIN_SAVING) * plain:
            return False
        order = sorted(packed, key=lambda item: len(item[1].tokens), reverse=True)
        if not self.packing_verified_:
            # The cheapest packed row that holds a tree (two rows or more) and a cached prefix, if any.
            probe = min(order, key=lambda item: (len(item[1].members) < 2, not starts[item[0]], len(item[1].tokens)))
            if not self._verify_packing(probe, starts, slots, caches, rows):
                return False

        def run(chunk: list[Packed]) -> None:
            scores = self._forward_packed(chunk, starts, slots, caches)
            picks = [(i, b, [path[j] for j in plain_positions(requests[i], starts[g])])
                     for b, (g, p) in enumerate(chunk) for r, path in p.members for i in plan.uses[r]]
            for (i, _, _), result in zip(picks, gather(scores, picks, requests, self.stop_sets_)):
                results[i] = result
            self._report_scored(results)

        longest_plain = max(len(rows[r]) - starts[g] for g, (_, members) in enumerate(window) for r in members)
        scale = min(1.0, max(longest_plain, ROW_TOKENS_FLOOR) / len(order[0][1].tokens))
        scale = min(scale, self._logits_scale(len(order[0][1].tokens), batch_size),
                    self._cache_scale(max(starts), batch_size))
        self._in_batches(order, run, batch_size, scale=scale)
        return True

    def _forward_packed(self, chunk: Sequence[Packed], starts: list[int], slots: dict[int, int],
                        caches: list | None) -> Scores:
        """Scores of packed rows, each continuing its own group's cached prefix (if any)."""
        prefix_lens = [starts[g] for g, _ in chunk]
        ids, positions, mask = tree_inputs([p for _, p in chunk], prefix_lens, self.pad_token_, self.model.dtype,
                                           self.device_)
        longest = max(prefix_lens)

        def inputs() -> dict[str, Any]:
            kwargs: dict[str, Any] = {"input_ids": ids, "position_ids": positions, "attention_mask": mask,
                                      "use_cache": bool(longest)}
            if longest:
                kwargs[self._cache_kw] = select_cache(caches, [slots.get(g, 0) for g, _ in chunk], longest)
            return kwargs

        return self._forward(inputs)

    def _verify_packing(self, item: Packed, starts: list[int], slots: dict[int, int], caches: list | None,
                        rows: list) -> bool:
        """Compare one packed row with its rows run plainly from their first token; turn packing off on a mismatch.

        Returns:
            Whether packing may be used now (False also when the plain logits are not finite: no verdict).
        """
        g, packed = item
        errors: list[float] = []

        def compare(chunk: list[tuple[int, list[int]]]) -> None:
            plain = self._forward_rows([rows[r] for r, _ in chunk], 0, None)
            for b, (_, path) in enumerate(chunk):
                n = len(path)  # NaN: no verdict, the model itself is not finite here
                errors.append(logprob_gap(plain, ([b] * n, range(starts[g], starts[g] + n)), got, ([0] * n, path)))

        try:
            got = self._forward_packed([item], starts, slots, caches)
        except Exception as exc:
            if is_oom(exc):
                raise
            return self._disable_packing(f"a tree-masked forward failed ({type(exc).__name__}: {exc})")
        widest = max(len(rows[r]) for r, _ in packed.members)
        self._in_batches(packed.members, compare, None, scale=self._logits_scale(widest, None))
        if any(math.isnan(e) for e in errors):
            return False  # plain rows will report the non-finite logits as failures
        error = max(errors)
        if not error <= tolerance(self.model.dtype):
            return self._disable_packing(f"tree packing changed log-probs by {error:.1e}")
        self.packing_verified_ = True
        self.reuse_verified_ = self.reuse_verified_ or starts[g] > 0  # that row continued a cached prefix
        return True

    def _disable_packing(self, reason: str) -> bool:
        log.warning("%s: tree packing disabled, scoring rows separately: %s", self.name, reason)
        self.packing_, self.packing_disabled_reason_ = False, reason
        return False

    def _window_caches(self, prefixes: list[tuple[int, ...]]) -> list | None:
        """Per layer, (keys, values) of all `prefixes`, stacked and right-padded to the longest;
        None when reuse is unsafe for this model (then disabled)."""
        if self.reuse_disabled_reason_:
            return None
        parts: list[list] = []

        def run(chunk: list[tuple[int, ...]]) -> None:
            for rows in low_padding_chunks([len(p) for p in chunk], len(chunk)):
                run_padded(chunk[rows.start:rows.stop])

        def run_padded(chunk: list[tuple[int, ...]]) -> None:
            # Right padding after a prefix cannot change it: causal attention never looks ahead.
            ids, _ = pad_rows(chunk, self.pad_token_)
            kwargs = {"input_ids": ids.to(self.device_), "use_cache": True}
            # Only the cache is used: the output layer runs on one position, not on every prefix token.
            out = (narrowed_forward(self.model, self.head_[0], kwargs)[0] if self.head_
                   else self.model(**kwargs, **last_logits_only(self.model)))
            cache = getattr(out, "cache", None)
            cache = cache if cache is not None else getattr(out, "past_key_values", None)
            reason = unsafe_cache_reason(cache)
            if reason:
                raise _UnsafeCache(reason)
            parts.append([(layer.keys, layer.values) for layer in cache.layers])

        try:
            self._in_batches(prefixes, run, None)
        except _UnsafeCache as exc:
            return self._disable_reuse(str(exc))
        except UserError:
            raise
        except Exception as exc:
            if is_oom(exc):
                raise
            return self._disable_reuse(f"a forward with a cached prefix failed ({type(exc).__name__}: {exc})")
        return stack_caches(parts, max(len(p) for p in prefixes))

    # ---- plain scoring, one group at a time ------------------------------------------------------

    def _score_group(self, prefix_len: int, members: list[int], plan: RowPlan, requests: Sequence[TokenRequest],
                     results: list, batch_size: int | None) -> None:
        rows, kv = plan.rows, None
        if prefix_len:
            try:
                kv = self._prefix_cache(rows[members[0]][:prefix_len], rows[members[-1]])
            except Exception as exc:
                if is_oom(exc):
                    raise self._oom_error() from exc
                raise
            prefix_len = prefix_len if kv is not None else 0

        def run(chunk: list[int]) -> None:
            scores = self._forward_rows([rows[r][prefix_len:] for r in chunk], prefix_len, kv)
            picks = [(i, b, plain_positions(requests[i], prefix_len)) for b, r in enumerate(chunk) for i in plan.uses[r]]
            for (i, _, _), result in zip(picks, gather(scores, picks, requests, self.stop_sets_)):
                results[i] = result
            self._report_scored(results)

        longest = max(len(rows[r]) for r in members) - prefix_len
        self._in_batches(sorted(members, key=lambda r: len(rows[r]), reverse=True), run, batch_size,
                         scale=self._logits_scale(longest, batch_size))

    def _forward_rows(self, rows: Sequence[Sequence[int]], prefix_len: int, kv: list | None) -> Scores:
        """Scores of right-padded rows that continue a cached prefix of `prefix_len` tokens."""
        ids, mask = (t.to(self.device_) for t in pad_rows(rows, self.pad_token_))

        def inputs() -> dict[str, Any]:
            kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "use_cache": False}
            if prefix_len:
                kwargs.update(prefix_inputs(kv, mask, prefix_len, self._cache_kw))
            return kwargs

        return self._forward(inputs)

    def _forward(self, inputs: Callable[[], dict[str, Any]]) -> Scores:
        """One forward pass on fresh `inputs()` (a cache in them is filled by the pass); its logits are left to
        `gather` to compute where needed (bounded memory), unless the output layer cannot be separated
        from the model, which is checked once per model."""
        if self.head_ is None:
            logits = self.model(**inputs()).logits
            return Scores(logits, None, logits.shape[-1])
        layer, head = self.head_
        out, hidden = narrowed_forward(self.model, layer, inputs())
        if hidden is None:
            self._disable_head("the output layer is not called once on the final hidden states")
            return self._forward(inputs)
        if not self.head_verified_:
            error = head_error(hidden, out.logits, head)
            if not error <= tolerance(self.model.dtype):  # NaN: no verdict (non-finite logits), use full logits
                if not math.isnan(error):
                    self._disable_head(f"logits from the output layer differ from the model's by {error:.1e}")
                logits = self.model(**inputs()).logits
                return Scores(logits, None, logits.shape[-1])
            self.head_verified_ = True
        return Scores(hidden, head, layer.weight.shape[0] if hasattr(layer, "weight") else 0)

    def _disable_head(self, reason: str) -> None:
        log.warning("%s: full-vocabulary logits at every position (more memory): %s", self.name, reason)
        self.head_, self.head_disabled_reason_ = None, reason

    def _prefix_cache(self, prefix: Sequence[int], probe_row: tuple[int, ...]) -> list | None:
        """Per-layer (keys, values) of `prefix`, or None when reuse is unsafe for this model (then disabled)."""
        kv = self._window_caches([tuple(prefix)])
        if kv is None:
            return None
        try:
            error = 0.0 if self.reuse_verified_ else self._reuse_error(probe_row, kv, len(prefix))
        except Exception as exc:
            if is_oom(exc):
                raise
            return self._disable_reuse(f"a forward with a cached prefix failed ({type(exc).__name__}: {exc})")
        # Checked once per model on a real row: catches position or mask handling this code does not expect.
        if error > tolerance(self.model.dtype):
            return self._disable_reuse(f"a reused prefix changed log-probs by {error:.1e}")
        self.reuse_verified_ = self.reuse_verified_ or math.isfinite(error)
        return kv

    def _reuse_error(self, row: tuple[int, ...], kv: list, prefix_len: int) -> float:
        """Max |log-prob difference| on one row between a full forward and one continuing the cached prefix."""
        n = len(row) - prefix_len
        full = self._forward_rows([row], 0, None)
        part = self._forward_rows([row[prefix_len:]], prefix_len, kv)
        return logprob_gap(full, ([0] * n, range(prefix_len, len(row))), part, ([0] * n, range(n)))

    def _disable_reuse(self, reason: str) -> None:
        if self.prefix_reuse_:
            log.warning("%s: prefix reuse disabled, scoring without it: %s", self.name, reason)
        self.prefix_reuse_, self.reuse_disabled_reason_ = False, reason
        return None

    def _report_scored(self, results: list) -> None:
        self._report(self.phase_, sum(r is not None for r in results), len(results))

    def _report(self, phase: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(phase, done, total)
