"""`HFModel`: the model protocol for any transformers causal LM in a local folder.

Scoring (`forward_engine`) scores identical rows once (and a row that is a prefix of another from
the longer one), reuses the key/value cache of a prefix shared by many rows, runs rows sharing
leading tokens as one tree-packed row, and turns NaN logits into NaN results with a reason.
Greedy generation (`generation`) batches contexts of any length after a shared cached prefix.
Loading is offline, without remote code or pickles.
"""
from __future__ import annotations

import inspect
import logging
import math
import random
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from harness.model.batching import TokenRequest
from harness.checkpoints.discovery import Checkpoint
from harness.model.generation import GreedyGeneration
from harness.model.hf_load import input_device, load_model_and_tokenizer, model_max_length, single_checkpoint
from harness.model.settings import BOS_POLICIES, ModelSettings
from harness.model.protocol import (
    LoglikelihoodRequest, LoglikelihoodResult, RollingResult, encode_pair,
    failed_loglikelihood, pair_texts, rolling_windows,
)
from harness.model.output_head import output_head
from harness.model.shared_prefix_attention import supports_shared_prefix
from harness.model.forward_engine import TokenScoring
from harness.model.tree_packing import attention_span
from skill_catalog.errors import UserError

log = logging.getLogger(__name__)
AUTO_BATCH_START = {"cuda": 256, "cpu": 32}
"""First batch size tried by ``batch_size="auto"`` (halved on out-of-memory); CPU starts lower
because running out of host memory often kills the process instead of raising."""
_MEMO_SIZE = 65536  # encoded strings kept; contexts repeat across the choices of an item
DEFAULT_WINDOW = 2048
"""Longest cross-entropy window without an explicit `max_length`: a 32k-token config window must not be
used blindly (attention cost grows with its square); the same on every device, so runs agree."""


def _max_length(override: int | None, own: int, name: str) -> int:
    """The override when it is within the model's own context (read from its config), else that context.

    Raises:
        UserError: The override is below 2 or beyond the model's context (positions it was never trained on).
    """
    if override is None:
        return own
    if not 2 <= override <= own:
        raise UserError(f"{name}: --max-length {override} is outside 2..{own} (the model's own context); "
                        f"fix: use at most {own}")
    return override


class HFModel(TokenScoring, GreedyGeneration):
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
        self.device_ = input_device(model)
        self.compute_dtype_ = str(next(model.parameters()).dtype).removeprefix("torch.")
        self.max_length_ = _max_length(self.settings.max_length, model_max_length(model, tokenizer), name)
        self.window_length_ = self.settings.max_length or min(self.max_length_, DEFAULT_WINDOW)
        self.bos_, self.bos_rule_ = bos_policy(model, tokenizer, self.settings.bos)
        output = model.get_output_embeddings()
        self.vocab_size_ = int(output.weight.shape[0]) if output is not None else len(tokenizer)
        size = self.settings.batch_size
        self.batch_size_ = AUTO_BATCH_START.get(self.device_.type, 32) if size == "auto" else int(size)
        bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
        self.prefix_token_ = bos if bos is not None else eos
        self.head_, self.head_verified_ = output_head(model), False
        self.head_disabled_reason_: str | None = None if self.head_ else "the model has no output layer module"
        self.stop_sets_: list[torch.Tensor] = []
        self._stop_index: dict[str, int] = {}
        self._token_texts: list[str] | None = None
        self.pad_token_ = next((t for t in (pad, eos) if t is not None), 0)
        off = "off in the settings (plain scoring)"
        self.prefix_reuse_ = self.settings.prefix_reuse
        self.reuse_verified_ = False
        self.reuse_disabled_reason_: str | None = None if self.prefix_reuse_ else off
        params = inspect.signature(model.forward).parameters
        self.attention_span_, span_problem = attention_span(model)
        self.packing_ = self.settings.tree_packing and span_problem is None
        self.packing_verified_ = False
        self.packing_disabled_reason_: str | None = span_problem or (None if self.settings.tree_packing else off)
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._encoded: dict[str, list[int]] = {}
        self.generation_verified_, self.left_padding_ok_, self.near_ties_ = False, True, 0
        self.shared_attention_ = (self.settings.shared_attention and self.attention_span_ is None
                                  and supports_shared_prefix(model))
        """Generation reads each shared prefix once per step (`shared_prefix_attention`), not a copy per row."""
        self.phase_ = "likelihood"
        self.progress: Callable[[str, int, int], None] | None = None
        """Called as ``progress(phase, done, total)`` after each batch (phases: cross-entropy, likelihood,
        generation); the runner's progress bar."""

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

    def context_tokens(self, context: str) -> list[int | None]:
        """Token ids a generation starts from: the prefix token for an empty context, and BOS first
        under the BOS policy (``[None]`` for an empty context without BOS/EOS token)."""
        if not context:
            return [self.prefix_token_]
        return ([self.prefix_token_] if self.bos_ else []) + self._encode(context)

    def _stop_set(self, stop: str) -> int | None:
        """Index in `stop_sets_` of the tokens that end a continuation at `stop` (EOS and every token whose
        text starts with `stop`), or None when no token does."""
        if stop not in self._stop_index:
            if self._token_texts is None:
                vocab = min(len(self.tokenizer), _vocab_size(self.model))
                self._token_texts = self.tokenizer.batch_decode([[i] for i in range(vocab)],
                                                                clean_up_tokenization_spaces=False)
            ids = {i for i, text in enumerate(self._token_texts) if text.startswith(stop)}
            eos = self.tokenizer.eos_token_id
            ids |= {eos} if eos is not None and eos < len(self._token_texts) else set()
            self._stop_index[stop] = len(self.stop_sets_)
            self.stop_sets_.append(torch.tensor(sorted(ids), dtype=torch.long, device=self.device_))
        index = self._stop_index[stop]
        return index if len(self.stop_sets_[index]) else None

    def _encode_all(self, texts: set[str]) -> dict[str, list[int]]:
        """Token ids of each text without special tokens, in one batched tokenizer call."""
        ordered = sorted(texts)
        ids = self.tokenizer(ordered, add_special_tokens=False)["input_ids"] if ordered else []
        return {text: list(tokens) for text, tokens in zip(ordered, ids)}

    # ---- the protocol -----------------------------------------------------------------------------

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        """Log-probability of each continuation given its context (lm-eval `_encode_pair` semantics)."""
        return self._loglikelihood(requests, batch_size=None, reuse=None)

    def _loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], batch_size: int | None, reuse: bool | None
    ) -> list[LoglikelihoodResult]:
        self.phase_ = "likelihood"
        results: list[LoglikelihoodResult | None] = [None] * len(requests)
        token_requests, owners = [], []
        encoded = self._encode_all({text for r in requests for text in pair_texts(r.context, r.continuation)})
        for i, request in enumerate(requests):
            try:
                pair = encode_pair(encoded.__getitem__, request.context, request.continuation, self.prefix_token_,
                                   always_prefix=self.bos_)
            except ValueError as exc:
                results[i] = failed_loglikelihood(str(exc))
                continue
            stop: list[int] = []
            if request.stop:
                index = self._stop_set(request.stop)
                if index is None:
                    results[i] = failed_loglikelihood(f"no token starts with the stop string {request.stop!r}")
                    continue
                stop = [-(index + 1)]  # scored as any token of the set (`batching.gather`)
            token_requests.append(TokenRequest(tuple(pair.context + pair.continuation + stop), len(pair.context)))
            owners.append(i)
        for i, score in zip(owners, self._score_tokens(token_requests, batch_size, reuse)):
            results[i] = score
        return results  # type: ignore[return-value]

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[RollingResult]:
        """Log-probability of each whole text in disjoint windows, the first token predicted from BOS/EOS."""
        self.phase_ = "cross-entropy"
        results: list[RollingResult | None] = [None] * len(texts)
        token_requests, owners = [], []
        for i, text in enumerate(texts):
            tokens, n_bytes = self._encode(text), len(text.encode("utf-8"))
            if not tokens or self.prefix_token_ is None:
                reason = "empty text" if not tokens else "the tokenizer has neither BOS nor EOS token"
                results[i] = RollingResult(math.nan, len(tokens), n_bytes, reason)
                continue
            results[i] = RollingResult(0.0, len(tokens), n_bytes)
            for window in rolling_windows(tokens, self.prefix_token_, self.window_length_):
                tokens = tuple(window.context + window.targets)
                token_requests.append(TokenRequest(tokens, len(window.context)))
                owners.append(i)
        for i, score in zip(owners, self._score_tokens(token_requests, None, None)):
            done = results[i]
            error = done.error or score.error
            total = math.nan if error else done.logprob + score.logprob
            results[i] = done._replace(logprob=total, error=error)
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


def _vocab_size(model: Any) -> int:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    size = getattr(config, "vocab_size", None)
    return size if isinstance(size, int) and size > 0 else 1 << 62


def bos_policy(model: Any, tokenizer: Any, setting: str = "auto") -> tuple[bool, str]:
    """Whether every context starts with BOS, and why.

    ``"auto"`` follows the model: yes for the Gemma family (lm-evaluation-harness forces it there: Gemma
    degenerates without BOS), yes when the tokenizer adds BOS itself (``add_bos_token``, or BOS first
    in what it encodes with special tokens), otherwise no. ``"always"`` and ``"never"`` override it.

    Raises:
        UserError: An unknown setting, or ``"always"`` for a tokenizer without a BOS token.
    """
    if setting not in BOS_POLICIES:
        raise UserError(f"bos {setting!r} is not one of {', '.join(BOS_POLICIES)}; fix: pass --bos auto")
    bos = tokenizer.bos_token_id
    if setting == "always":
        if bos is None:
            raise UserError("--bos always, but the tokenizer has no BOS token; fix: use --bos auto or never")
        return True, "always (--bos always)"
    if setting == "never":
        return False, "never (--bos never)"
    if bos is None:
        return False, "never (the tokenizer has no BOS token)"
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    family = f"{getattr(model.config, 'model_type', '')} {getattr(config, 'model_type', '')}"
    if "gemma" in family.lower():
        return True, f"always (model type {family.split()[-1]} is in the Gemma family)"
    if getattr(tokenizer, "add_bos_token", None) is True:
        return True, "always (the tokenizer sets add_bos_token)"
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    if probe and probe[0] == bos and tokenizer("a", add_special_tokens=False)["input_ids"][:1] != [bos]:
        return True, "always (the tokenizer adds BOS when it encodes)"
    return False, "never (neither the model family nor the tokenizer asks for BOS)"
