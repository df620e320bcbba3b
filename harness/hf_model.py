"""`HFModel`: the model protocol for any transformers causal LM in a local folder.

Scoring sorts rows by length, scores identical rows once (and a row that is a prefix of another
from the longer one), reuses the key/value cache of a prefix shared by many rows, and turns NaN
logits into NaN results with a reason. Loading is offline, without remote code or pickles.
"""
from __future__ import annotations

import inspect
import json
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import torch

from harness.offline import enforce_offline

enforce_offline()  # before transformers reads the hub settings at import
import transformers  # noqa: E402

from harness.checkpoints import Checkpoint, discover
from harness.model import (
    GenerationRequest,
    GenerationResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    RollingResult,
    encode_pair,
    failed_loglikelihood,
    rolling_windows,
    truncate_at_stop,
)
from skill_catalog.errors import UserError

log = logging.getLogger(__name__)
AUTO_BATCH_START = {"cuda": 256, "cpu": 32}
"""First batch size tried by ``batch_size="auto"`` (halved on out-of-memory); CPU starts lower
because running out of host memory often kills the process instead of raising."""
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
_MEMO_SIZE = 65536  # encoded strings kept; contexts repeat across the choices of an item
_DTYPE_KW = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
_OOM = tuple({getattr(torch, "OutOfMemoryError", RuntimeError), torch.cuda.OutOfMemoryError})


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


class _TokenRequest(NamedTuple):
    tokens: tuple[int, ...]  # context + continuation; the model reads tokens[:-1]
    n_context: int  # tokens[n_context:] are scored, from logits at n_context - 1 on


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    if isinstance(exc, _OOM):
        return True
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


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


def _unsafe_cache_reason(cache: Any) -> str | None:
    """Why a prefix cache cannot be copied into a batch safely, or None when it can."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    if not isinstance(cache, DynamicCache):
        return f"cache type {type(cache).__name__} is not a DynamicCache"
    odd = [type(layer).__name__ for layer in cache.layers if type(layer) is not DynamicLayer]
    return f"cache layers of type {odd[0]} (sliding window, recurrent, ...)" if odd else None


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
        self.max_length_ = self.settings.max_length or _model_max_length(model, tokenizer)
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
        if not isinstance(checkpoint, Checkpoint):
            found = discover(checkpoint, allow_pickle=settings.allow_pickle)
            if len(found) != 1:
                raise UserError(f"{checkpoint}: holds {len(found)} checkpoints; fix: pass one of them")
            checkpoint = found[0]
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
            token_requests.append(_TokenRequest(tuple(pair.context + pair.continuation), len(pair.context)))
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
                token_requests.append(_TokenRequest(tokens, len(window.context)))
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
            if context == [None] or request.max_new_tokens < 1:
                results[i] = GenerationResult("", 0, "empty context without BOS/EOS token, or max_new_tokens < 1")
            elif len(context) + request.max_new_tokens > self.max_length_:
                reason = f"too long: {len(context)} context + {request.max_new_tokens} new tokens"
                results[i] = GenerationResult("", 0, f"{reason} > max_length {self.max_length_}")
            else:
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
        self, requests: Sequence[_TokenRequest], batch_size: int | None, reuse: bool | None
    ) -> list[LoglikelihoodResult]:
        """Score token requests; `batch_size`/`reuse` override the settings (used by `drift`)."""
        reuse = self.prefix_reuse_ if reuse is None else reuse
        results: list[LoglikelihoodResult | None] = [None] * len(requests)
        valid = []
        for i, request in enumerate(requests):
            n = len(request.tokens) - request.n_context
            if n == 0:
                results[i] = failed_loglikelihood("the continuation encodes to no tokens")
            elif len(request.tokens) - 1 > self.max_length_:
                reason = f"too long: {len(request.tokens) - 1} input tokens > max_length {self.max_length_}"
                results[i] = failed_loglikelihood(reason, n)
            else:
                valid.append(i)
        rows, row_of = merge_rows([requests[i].tokens[:-1] for i in valid], merge_prefixes=reuse)
        uses: list[list[int]] = [[] for _ in rows]
        for i, r in zip(valid, row_of):
            uses[r].append(i)
        reusable = [min(requests[i].n_context - 1 for i in u) for u in uses]
        if reuse:
            groups = prefix_groups(rows, reusable, self.settings.prefix_min_tokens)
        else:
            groups = [(0, list(range(len(rows))))]
        for prefix_len, members in groups:
            self._score_group(prefix_len, members, rows, uses, requests, results, batch_size)
        return results  # type: ignore[return-value]

    def _score_group(
        self, prefix_len: int, members: list[int], rows: list[tuple[int, ...]], uses: list[list[int]],
        requests: Sequence[_TokenRequest], results: list, batch_size: int | None,
    ) -> None:
        kv = None
        if prefix_len:
            try:
                kv = self._prefix_cache(rows[members[0]][:prefix_len], rows[members[-1]])
            except Exception as exc:
                if _is_oom(exc):
                    raise self._oom_error() from exc
                raise
            prefix_len = prefix_len if kv is not None else 0

        def run(chunk: list[int]) -> None:
            logits = self._forward_rows([rows[r][prefix_len:] for r in chunk], prefix_len, kv)
            for b, r in enumerate(chunk):
                for i in uses[r]:
                    results[i] = _gather(logits[b], requests[i], prefix_len)

        self._in_batches(sorted(members, key=lambda r: len(rows[r]), reverse=True), run, batch_size)

    def _forward_rows(self, rows: Sequence[Sequence[int]], prefix_len: int, kv: list | None) -> torch.Tensor:
        """float32 logits of right-padded rows that continue a cached prefix of `prefix_len` tokens."""
        n_rows, width = len(rows), max(len(r) for r in rows)
        ids = torch.full((n_rows, width), self.pad_token_, dtype=torch.long)
        mask = torch.zeros((n_rows, width), dtype=torch.long)
        for b, row in enumerate(rows):
            ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[b, : len(row)] = 1
        ids, mask = ids.to(self.device_), mask.to(self.device_)
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "use_cache": False}
        if prefix_len:
            # Right padding keeps real tokens at positions prefix_len.. ; padded positions are never scored.
            cached = torch.ones((n_rows, prefix_len), dtype=mask.dtype, device=self.device_)
            kwargs.update({
                self._cache_kw: _batch_cache(kv, n_rows),
                "use_cache": True,
                "attention_mask": torch.cat([cached, mask], 1),
                "position_ids": torch.arange(prefix_len, prefix_len + width, device=self.device_).repeat(n_rows, 1),
            })
        return self.model(**kwargs).logits.float()

    def _prefix_cache(self, prefix: Sequence[int], probe_row: tuple[int, ...]) -> list | None:
        """Per-layer (keys, values) of `prefix`, or None when reuse is unsafe for this model (then disabled)."""
        if self.reuse_disabled_reason_:
            return None
        try:
            out = self.model(input_ids=torch.tensor([list(prefix)], device=self.device_), use_cache=True)
            cache = getattr(out, "cache", None)
            cache = cache if cache is not None else getattr(out, "past_key_values", None)
            reason = _unsafe_cache_reason(cache)
            if reason:
                return self._disable_reuse(reason)
            kv = [(layer.keys, layer.values) for layer in cache.layers]
            error = 0.0 if self.reuse_verified_ else self._reuse_error(probe_row, kv, len(prefix))
        except Exception as exc:
            if _is_oom(exc):
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
                if not _is_oom(exc):
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

    @torch.inference_mode()
    def _generate_batch(
        self, chunk: list[tuple[int, list[int]]], requests: Sequence[GenerationRequest], results: list
    ) -> None:
        ids = torch.tensor([context for _, context in chunk], dtype=torch.long, device=self.device_)
        todo = [requests[i] for i, _ in chunk]
        limits = [r.max_new_tokens for r in todo]
        stopper = _StopStrings(self.tokenizer, ids.shape[1], [r.stop for r in todo], limits)
        config = transformers.GenerationConfig(
            do_sample=False, num_beams=1, max_new_tokens=max(r.max_new_tokens for r in todo),
            eos_token_id=self.tokenizer.eos_token_id, pad_token_id=self.pad_token_,
            output_logits=True, return_dict_in_generate=True,
        )
        out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config,
                                  stopping_criteria=transformers.StoppingCriteriaList([stopper]))
        for b, (i, _) in enumerate(chunk):
            new = out.sequences[b, ids.shape[1]:].tolist()
            n = min(stopper.done_at[b] or len(new), len(new), todo[b].max_new_tokens)
            if self.tokenizer.eos_token_id in new[:n]:
                n = new.index(self.tokenizer.eos_token_id) + 1
            if not all(torch.isfinite(step[b]).all() for step in out.logits[:n]):
                results[i] = GenerationResult("", n, "non-finite logits (NaN or inf) during generation")
                continue
            text, _ = truncate_at_stop(self.tokenizer.decode(new[:n], skip_special_tokens=True), todo[b].stop)
            results[i] = GenerationResult(text, n)


def _gather(logits: torch.Tensor, request: _TokenRequest, prefix_len: int) -> LoglikelihoodResult:
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


def _batch_cache(kv: list, n_rows: int) -> Any:
    """A fresh DynamicCache holding the prefix for `n_rows` rows; forward calls grow it, never `kv`."""
    from transformers import DynamicCache

    # DynamicLayer.update concatenates, so the expanded views are copied and `kv` stays untouched.
    return DynamicCache([(k.expand(n_rows, -1, -1, -1), v.expand(n_rows, -1, -1, -1)) for k, v in kv])


class _StopStrings(transformers.StoppingCriteria):
    """Stops each row when its text contains one of its stop strings or it reached its own token limit."""

    def __init__(self, tokenizer: Any, start: int, stops: list[tuple[str, ...]], limits: list[int]) -> None:
        self.tokenizer, self.start, self.stops, self.limits = tokenizer, start, stops, limits
        self.done_at: list[int | None] = [None] * len(stops)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.Tensor:
        n = input_ids.shape[1] - self.start
        for b, stops in enumerate(self.stops):
            if self.done_at[b] is None and (n >= self.limits[b] or (stops and truncate_at_stop(
                    self.tokenizer.decode(input_ids[b, self.start:], skip_special_tokens=True), stops)[1])):
                self.done_at[b] = n
        return torch.tensor([d is not None for d in self.done_at], dtype=torch.bool, device=input_ids.device)


# ---- loading ---------------------------------------------------------------------------------------

def resolve_device(device: str) -> torch.device:
    """``"auto"`` is cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _model_max_length(model: Any, tokenizer: Any) -> int:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length", "max_seq_len"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and limit < 10**6 else 2048


def _check_causal_config(checkpoint: Checkpoint) -> None:
    """Refuse encoder-decoder and masked-LM configs before loading any weights."""
    if checkpoint.fmt == "gguf":
        return
    config = json.loads((checkpoint.path / "config.json").read_text())
    architectures = config.get("architectures") or []
    masked = architectures and all(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in architectures)
    if config.get("is_encoder_decoder") or masked:
        raise UserError(f"{checkpoint.path}: {', '.join(architectures) or 'an encoder-decoder'} is not a causal "
                        "language model; fix: pass a decoder-only checkpoint (...ForCausalLM)")


def _check_causal(model: Any, path: Path) -> None:
    """Refuse a model whose first-position prediction depends on later tokens (bidirectional attention)."""
    ids = torch.tensor([[0, 1], [0, 2]], device=next(model.parameters()).device)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits.float()
    if not torch.allclose(logits[0, 0], logits[1, 0], atol=1e-4, rtol=0):
        raise UserError(f"{path}: not a causal language model (position 0 sees later tokens); "
                        "fix: pass a decoder-only checkpoint (...ForCausalLM)")


def _load_tokenizer(checkpoint: Checkpoint, source: dict[str, Any]) -> Any:
    try:
        return transformers.AutoTokenizer.from_pretrained(**source)
    except Exception as exc:  # tokenizer loaders raise many types on bad files
        raise UserError(f"{checkpoint.tokenizer_path}: cannot load the tokenizer of {checkpoint.path} "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                        "fix: save it with tokenizer.save_pretrained()") from exc


def load_model_and_tokenizer(checkpoint: Checkpoint, settings: ModelSettings) -> tuple[Any, Any]:
    """Load a checkpoint's model (eval mode, on its device) and tokenizer, offline and without remote code.

    Raises:
        UserError: Refused pickle, half precision on CPU, unloadable tokenizer or weights, non-causal model.
    """
    enforce_offline()
    if checkpoint.fmt == "pickle" and not settings.allow_pickle:
        raise UserError(f"{checkpoint.path}: pickle weights can run code when loaded; "
                        "fix: convert them to safetensors, or pass allow_pickle=True if you trust their source")
    device = resolve_device(settings.device)
    if settings.dtype not in _DTYPES:
        raise UserError(f"{checkpoint.path}: unknown dtype {settings.dtype!r}; fix: use one of {', '.join(_DTYPES)}")
    dtype = _DTYPES[settings.dtype]
    if dtype != torch.float32 and device.type == "cpu":
        raise UserError(f"{checkpoint.path}: dtype {settings.dtype} is only used on a GPU; fix: use float32 on CPU")
    _check_causal_config(checkpoint)
    safe = {"local_files_only": True, "trust_remote_code": False}
    if checkpoint.fmt == "gguf":
        source = {"pretrained_model_name_or_path": checkpoint.path.parent, "gguf_file": checkpoint.path.name}
        source.update(safe)
        tokenizer = _load_tokenizer(checkpoint, source)
    else:
        source = {"pretrained_model_name_or_path": checkpoint.path, "use_safetensors": checkpoint.fmt == "safetensors"}
        source.update(safe)
        tokenizer = _load_tokenizer(checkpoint, {"pretrained_model_name_or_path": checkpoint.tokenizer_path, **safe})
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(**source, **{_DTYPE_KW: dtype})
    except Exception as exc:  # from_pretrained raises ValueError, OSError, KeyError, ... on bad input
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(f"{checkpoint.path}: cannot load as a causal language model "
                        f"({type(exc).__name__}: {first}); fix: pass a decoder-only transformers checkpoint") from exc
    try:
        model.to(device).eval()
    except Exception as exc:
        if not _is_oom(exc):
            raise
        raise UserError(f"{checkpoint.path}: out of memory moving the model to {device}; "
                        "fix: use dtype bfloat16 or a device with more memory") from exc
    _check_causal(model, checkpoint.path)
    return model, tokenizer
