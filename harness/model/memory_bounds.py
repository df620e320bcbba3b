"""Memory bounds of scoring and generation: batch sizes that halve on out-of-memory, and budgets for the
vocabulary logits and cached keys/values a forward may hold on a CPU (where running out of memory kills
the process instead of raising). Fewer rows per batch never changes a score."""
from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import torch

from harness.model.hf_load import is_oom
from skill_catalog.errors import UserError

log = logging.getLogger(__name__)

LOGITS_BUDGET = {"cpu": 2**26}
"""Most vocabulary logits (floats, 256 MB) one scoring forward may make, by device type: on a CPU, running out
of memory kills the process instead of raising, and a 49k vocabulary makes 200 KB of logits per position.
Fewer rows per batch never changes a score."""
CACHE_BUDGET = {"cpu": 2**26}
"""Most cached prefix keys and values (floats, 256 MB) a window of prefixes, and again a batch of rows
continuing them, may hold, by device type (each row holds its own copy of its prefix)."""


def kv_floats_per_token(config: Any) -> int | None:
    """Keys and values one token adds to a full-attention cache, from the model config; None if unknown."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    layers, heads = getattr(config, "num_hidden_layers", None), getattr(config, "num_attention_heads", None)
    hidden = getattr(config, "hidden_size", None)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or (hidden // heads if hidden and heads else None)
    if not all(isinstance(v, int) and v > 0 for v in (layers, kv_heads, head_dim)):
        return None
    return 2 * layers * kv_heads * head_dim


class MemoryBounds:
    """Batching under memory limits, for a model wrapper with the attributes annotated below."""

    name: str
    model: Any
    device_: torch.device
    batch_size_: int
    max_length_: int
    vocab_size_: int

    def _oom_error(self) -> UserError:
        return UserError(
            f"{self.name}: out of memory at batch size 1 (max_length {self.max_length_}); "
            "fix: lower max_length, use dtype bfloat16 on a GPU, or use a device with more memory"
        )

    def _in_batches(self, items: list, run: Callable[[list], None], fixed: int | None, scale: float = 1.0) -> None:
        """Call `run` on consecutive chunks of `scale` times the batch size (at least 1), halving on out-of-memory.

        Args:
            items: What to run, in order.
            run: Called on each chunk.
            fixed: A batch size that overrides (and is not changed by) the learned one.
            scale: Chunk size relative to the batch size (below 1 for items larger than a plain row).
        """
        size, i = max(1, int((fixed or self.batch_size_) * scale)), 0
        while i < len(items):
            chunk = items[i:i + size]
            try:
                run(chunk)
            except Exception as exc:
                if not is_oom(exc):
                    raise
                if len(chunk) == 1:
                    raise self._oom_error() from exc
                size = max(1, len(chunk) // 2)
                self.batch_size_ = max(1, int(size / scale)) if fixed is None else self.batch_size_
                log.warning("%s: out of memory at batch size %d, retrying with %d", self.name, len(chunk), size)
                self._free_memory()
                continue
            i += len(chunk)

    def _logits_scale(self, width: int, fixed: int | None) -> float:
        """Batch scale that keeps a forward's vocabulary logits within `LOGITS_BUDGET` (CPU only)."""
        return self._budget_scale(LOGITS_BUDGET, width * self.vocab_size_, fixed)

    def _cache_scale(self, tokens: int, fixed: int | None, budgets: dict[str, int] | None = None) -> float:
        """Batch scale that keeps the cached keys and values of rows of `tokens` tokens within `budgets`
        (default `CACHE_BUDGET`)."""
        per_token = kv_floats_per_token(self.model.config)
        return self._budget_scale(budgets or CACHE_BUDGET, tokens * per_token, fixed) if per_token else 1.0

    def _budget_scale(self, budgets: dict[str, int], floats_per_row: float, fixed: int | None) -> float:
        budget = budgets.get(self.device_.type)
        if budget is None or floats_per_row <= 0:
            return 1.0
        return min(1.0, budget / floats_per_row / (fixed or self.batch_size_))

    def _in_windows(self, groups: Sequence[Any], prefix_length: Callable[[Any], int], run: Callable[[list], None],
                    size: int) -> None:
        """Runs `run` on consecutive windows of `groups` (sorted by prefix length), each holding at most `size`
        groups and no more prefix caches than `CACHE_BUDGET` allows; out of memory before a window is done
        halves the window (nothing of it is kept) — the one out-of-memory loop of scoring and generation."""
        start = 0
        while start < len(groups):
            longest = prefix_length(groups[min(len(groups), start + size) - 1])
            window = list(groups[start:start + max(1, int(size * self._cache_scale(longest, size)))])
            try:
                run(window)
            except Exception as exc:  # out of memory holding the window's prefix caches: fewer at a time
                if not is_oom(exc):
                    raise
                if len(window) == 1:
                    raise self._oom_error() from exc
                size = len(window) // 2
                log.warning("%s: out of memory holding %d prefix caches, retrying with %d", self.name, len(window),
                            size)
                self._free_memory()
                continue
            start += len(window)

    def _free_memory(self) -> None:
        if self.device_.type == "cuda":
            torch.cuda.empty_cache()
