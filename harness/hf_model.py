"""`HFModel`: the model protocol for any transformers causal LM in a local folder.

Scoring sorts rows by length, scores identical rows once (and a row that is a prefix of another
from the longer one), reuses the key/value cache of a prefix shared by many rows, and turns NaN
logits into NaN results with a reason. Loading is offline, without remote code or pickles.
"""
from __future__ import annotations

import inspect
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from harness.batching import (
    RowPlan, TokenRequest, gather, length_failure, pad_rows, plan_rows, prefix_inputs, unsafe_cache_reason,
)
from harness.checkpoints import Checkpoint
from harness.hf_generate import generate_batch, generation_failure
from harness.hf_load import is_oom, load_model_and_tokenizer, model_max_length, single_checkpoint
from harness.model import (
    GenerationRequest, GenerationResult, LoglikelihoodRequest, LoglikelihoodResult, RollingResult, encode_pair,
    failed_loglikelihood, rolling_windows,
)
from skill_catalog.errors import UserError

log = logging.getLogger(__name__)
AUTO_BATCH_START = {"cuda": 256, "cpu": 32}
"""First batch size tried by ``batch_size="auto"`` (halved on out-of-memory); CPU starts lower
because running out of host memory often kills the process instead of raising."""
_MEMO_SIZE = 65536  # encoded strings kept; contexts repeat across the choices of an item


@dataclass(frozen=True)
class ModelSettings:
    """How a checkpoint is loaded and run."""

    device: str = "auto"
    """``"auto"`` (cuda if available, else cpu), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ..."""
    dtype: str = "float32"
    """``"float32"``; ``"bfloat16"`` or ``"float16"`` only on a GPU."""
    batch_size: int | str = "auto"
    """Rows per forward pass, or ``"auto"``; halved on out-of-memory either way."""
    max_length: int | None = None
    """Maximum model inputs per row; None reads it from the model config."""
    prefix_reuse: bool = True
    """Compute the key/value cache of a shared prefix once per group of rows."""
    prefix_min_tokens: int = 16
    """Shortest shared prefix worth reusing."""
    allow_pickle: bool = False
    """Load pickle weight files (they can run code); only for trusted checkpoints."""


class HFModel:
    """The model protocol for a transformers causal LM. Learned state ends in ``_``."""

    def __init__(
        self, model: Any, tokenizer: Any, settings: ModelSettings | None = None, name: str = "model"
    ) -> None:
        """Wrap a loaded model (in eval mode, on its device) and its tokenizer.

        Args:
            model: A transformers causal LM.
            tokenizer: Its tokenizer.
            settings: Batch size, maximum length and prefix reuse settings.
            name: Named in error messages (the checkpoint path).
        """
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.settings = settings or ModelSettings()
        self.device_ = next(model.parameters()).device
        self.max_length_ = self.settings.max_length or model_max_length(model, tokenizer)
        size = self.settings.batch_size
        self.batch_size_ = AUTO_BATCH_START.get(self.device_.type, 32) if size == "auto" else int(size)
        bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
        self.prefix_token_ = bos if bos is not None else eos
        self.pad_token_ = next((t for t in (pad, eos) if t is not None), 0)
        self.prefix_reuse_ = self.settings.prefix_reuse
        self.reuse_verified_ = False
        self.reuse_disabled_reason_: str | None = None
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._encoded: dict[str, list[int]] = {}

    @classmethod
    def from_checkpoint(
        cls, checkpoint: Checkpoint | str | Path, settings: ModelSettings | None = None
    ) -> HFModel:
        """Load a checkpoint offline (local files only, no remote code, no pickles unless allowed).

        Raises:
            UserError: Refused pickle, missing tokenizer, non-causal model, unloadable files.
        """
        settings = settings or ModelSettings()
        checkpoint = single_checkpoint(checkpoint, settings.allow_pickle)
        model, tokenizer = load_model_and_tokenizer(checkpoint, settings)
        return cls(model, tokenizer, settings, name=str(checkpoint.path))

    # ---- encoding -------------------------------------------------------------------------------

    def _encode(self, text: str) -> list[int]:
        """Token ids without special tokens, memoized (contexts repeat across the choices of an item)."""
        if text not in self._encoded:
            if len(self._encoded) >= _MEMO_SIZE:
                self._encoded.clear()
            self._encoded[text] = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return self._encoded[text]

    # ---- the protocol -----------------------------------------------------------------------------

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        """Log-probability of each continuation given its context (lm-eval `_encode_pair` semantics)."""
        return self._loglikelihood(requests, batch_size=None, reuse=None)

    def _loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], batch_size: int | None, reuse: bool | None
    ) -> list[LoglikelihoodResult]:
        results: list[LoglikelihoodResult | None] = [None] * len(requests)
        token_requests, owners = [], []
        for i, (context, continuation) in enumerate(requests):
            try:
                pair = encode_pair(self._encode, context, continuation, self.prefix_token_)
            except ValueError as exc:
                results[i] = failed_loglikelihood(str(exc))
                continue
            token_requests.append(TokenRequest(tuple(pair.context + pair.continuation), len(pair.context)))
            owners.append(i)
        for i, score in zip(owners, self._score_tokens(token_requests, batch_size, reuse)):
            results[i] = score
        return results  # type: ignore[return-value]

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[RollingResult]:
        """Log-probability of each whole text in disjoint windows, the first token predicted from BOS/EOS."""
        results: list[RollingResult | None] = [None] * len(texts)
        token_requests, owners = [], []
        for i, text in enumerate(texts):
            tokens, n_bytes = self._encode(text), len(text.encode("utf-8"))
            if not tokens or self.prefix_token_ is None:
                reason = "empty text" if not tokens else "the tokenizer has neither BOS nor EOS token"
                results[i] = RollingResult(math.nan, len(tokens), n_bytes, reason)
                continue
            results[i] = RollingResult(0.0, len(tokens), n_bytes)
            for window in rolling_windows(tokens, self.prefix_token_, self.max_length_):
                tokens = tuple(window.context + window.targets)
                token_requests.append(TokenRequest(tokens, len(window.context)))
                owners.append(i)
        for i, score in zip(owners, self._score_tokens(token_requests, None, None)):
            done = results[i]
            error = done.error or score.error
            total = math.nan if error else done.logprob + score.logprob
            results[i] = done._replace(logprob=total, error=error)
        return results  # type: ignore[return-value]

    def generate_until(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Greedy generation; contexts of equal token length are batched together, so no padding is needed."""
        results: list[GenerationResult | None] = [None] * len(requests)
        by_length: dict[int, list[tuple[int, list[int]]]] = {}
        for i, request in enumerate(requests):
            context = self._encode(request.context) if request.context else [self.prefix_token_]
            results[i] = generation_failure(context, request.max_new_tokens, self.max_length_)
            if results[i] is None:
                by_length.setdefault(len(context), []).append((i, context))
        for group in by_length.values():
            self._in_batches(group, lambda chunk: self._generate_batch(chunk, requests, results), None)
        return results  # type: ignore[return-value]

    def drift(self, requests: Sequence[LoglikelihoodRequest], results: Sequence[LoglikelihoodResult] | None = None,
              sample_size: int = 32, seed: int = 0) -> float:
        """Largest |difference| between batched scores and a rescoring at batch size 1 without any reuse.

        Args:
            requests: Requests to sample from.
            results: Their batched results; computed on the sample when None.
            sample_size: How many requests to rescore.
            seed: Seed of the sample.

        Returns:
            The maximum absolute difference in nats over requests finite both ways; NaN when none is.
        """
        rng = random.Random(seed)
        picked = sorted(rng.sample(range(len(requests)), min(sample_size, len(requests))))
        sample = [requests[i] for i in picked]
        batched = [results[i] for i in picked] if results is not None else self.loglikelihood(sample)
        single = self._loglikelihood(sample, batch_size=1, reuse=False)
        diffs = [abs(a.logprob - b.logprob) for a, b in zip(batched, single)
                 if math.isfinite(a.logprob) and math.isfinite(b.logprob)]
        return max(diffs) if diffs else math.nan

    # ---- scoring engine --------------------------------------------------------------------------

    @torch.inference_mode()
    def _score_tokens(
        self, requests: Sequence[TokenRequest], batch_size: int | None, reuse: bool | None
    ) -> list[LoglikelihoodResult]:
        """Score token requests; `batch_size`/`reuse` override the settings (used by `drift`)."""
        reuse = self.prefix_reuse_ if reuse is None else reuse
        results: list[LoglikelihoodResult | None] = [length_failure(r, self.max_length_) for r in requests]
        valid = [i for i, failure in enumerate(results) if failure is None]
        plan = plan_rows(requests, valid, reuse, self.settings.prefix_min_tokens)
        for prefix_len, members in plan.groups:
            self._score_group(prefix_len, members, plan, requests, results, batch_size)
        return results  # type: ignore[return-value]

    def _score_group(
        self, prefix_len: int, members: list[int], plan: RowPlan, requests: Sequence[TokenRequest],
        results: list, batch_size: int | None,
    ) -> None:
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
            logits = self._forward_rows([rows[r][prefix_len:] for r in chunk], prefix_len, kv)
            for b, r in enumerate(chunk):
                for i in plan.uses[r]:
                    results[i] = gather(logits[b], requests[i], prefix_len)

        self._in_batches(sorted(members, key=lambda r: len(rows[r]), reverse=True), run, batch_size)

    def _forward_rows(self, rows: Sequence[Sequence[int]], prefix_len: int, kv: list | None) -> torch.Tensor:
        """float32 logits of right-padded rows that continue a cached prefix of `prefix_len` tokens."""
        ids, mask = (t.to(self.device_) for t in pad_rows(rows, self.pad_token_))
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "use_cache": False}
        if prefix_len:
            kwargs.update(prefix_inputs(kv, mask, prefix_len, self._cache_kw))
        return self.model(**kwargs).logits.float()

    def _prefix_cache(self, prefix: Sequence[int], probe_row: tuple[int, ...]) -> list | None:
        """Per-layer (keys, values) of `prefix`, or None when reuse is unsafe for this model (then disabled)."""
        if self.reuse_disabled_reason_:
            return None
        try:
            out = self.model(input_ids=torch.tensor([list(prefix)], device=self.device_), use_cache=True)
            cache = getattr(out, "cache", None)
            cache = cache if cache is not None else getattr(out, "past_key_values", None)
            reason = unsafe_cache_reason(cache)
            if reason:
                return self._disable_reuse(reason)
            kv = [(layer.keys, layer.values) for layer in cache.layers]
            error = 0.0 if self.reuse_verified_ else self._reuse_error(probe_row, kv, len(prefix))
        except Exception as exc:
            if is_oom(exc):
                raise
            return self._disable_reuse(f"a forward with a cached prefix failed ({type(exc).__name__}: {exc})")
        # Checked once per model on a real row: catches position or mask handling this code does not expect.
        if error > (1e-4 if self.model.dtype == torch.float32 else 5e-2):
            return self._disable_reuse(f"a reused prefix changed log-probs by {error:.1e}")
        self.reuse_verified_ = self.reuse_verified_ or math.isfinite(error)
        return kv

    def _reuse_error(self, row: tuple[int, ...], kv: list, prefix_len: int) -> float:
        """Max |log-prob difference| on one row between a full forward and one continuing the cached prefix."""
        full = torch.log_softmax(self._forward_rows([row], 0, None)[0, prefix_len:], -1)
        part = torch.log_softmax(self._forward_rows([row[prefix_len:]], prefix_len, kv)[0], -1)
        return float((full - part).abs().max())

    def _disable_reuse(self, reason: str) -> None:
        if self.prefix_reuse_:
            log.warning("%s: prefix reuse disabled, scoring without it: %s", self.name, reason)
        self.prefix_reuse_, self.reuse_disabled_reason_ = False, reason
        return None

    def _oom_error(self) -> UserError:
        return UserError(
            f"{self.name}: out of memory at batch size 1 (max_length {self.max_length_}); "
            "fix: lower max_length, use dtype bfloat16 on a GPU, or use a device with more memory"
        )

    def _in_batches(self, items: list, run: Callable[[list], None], fixed: int | None) -> None:
        """Call `run` on consecutive chunks, halving the batch size on out-of-memory."""
        size, i = fixed or self.batch_size_, 0
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
                self.batch_size_ = size if fixed is None else self.batch_size_
                log.warning("%s: out of memory at batch size %d, retrying with %d", self.name, len(chunk), size)
                if self.device_.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            i += len(chunk)

    # ---- generation ------------------------------------------------------------------------------

    def _generate_batch(
        self, chunk: list[tuple[int, list[int]]], requests: Sequence[GenerationRequest], results: list
    ) -> None:
        ids = torch.tensor([context for _, context in chunk], dtype=torch.long, device=self.device_)
        done = generate_batch(self.model, self.tokenizer, ids, [requests[i] for i, _ in chunk], self.pad_token_)
        for (i, _), result in zip(chunk, done):
            results[i] = result
