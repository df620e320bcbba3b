"""A model wrapper that answers repeated requests from the shared SQLite cache.

Keys hold the weight hash, tokenizer hash and dtype, so a cache can never serve one model's
numbers to another; failed results are not cached, so they are retried on the next run.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from harness.storage.result_cache import ResultCache, cache_key
from harness.model.protocol import (
    GenerationRequest, GenerationResult, LanguageModel, LoglikelihoodRequest, LoglikelihoodResult, RollingResult,
)


class CachedModel:
    """The model protocol, served from `cache` where possible and from `model` otherwise."""

    def __init__(self, model: LanguageModel, cache: ResultCache, identity: tuple[str, str, str],
                 settings: dict | None = None) -> None:
        """Args:
            model: The model that computes misses.
            cache: The shared result cache.
            identity: (weight hash, tokenizer hash, dtype) of the model.
            settings: Anything else that changes a result (the maximum length sets rolling windows).
        """
        self.model, self.cache, self.identity = model, cache, identity
        self.settings = settings or {}
        self.hits_ = 0
        self.misses_ = 0

    def _through(self, kind: str, requests: Sequence[Any], compute: Callable, result_type: type) -> list:
        keys = [cache_key(*self.identity, kind, r, self.settings) for r in requests]
        found = self.cache.get_many(keys)
        missing = [i for i, k in enumerate(keys) if k not in found]
        self.hits_ += len(requests) - len(missing)
        self.misses_ += len(missing)
        computed = compute([requests[i] for i in missing]) if missing else []
        fresh = {keys[i]: r for i, r in zip(missing, computed)}
        self.cache.put_many({k: r for k, r in fresh.items() if r.error is None})
        return [fresh[k] if k in fresh else result_type(**found[k]) for k in keys]

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        """Cached `loglikelihood`."""
        return self._through("loglikelihood", requests, self.model.loglikelihood, LoglikelihoodResult)

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[RollingResult]:
        """Cached `loglikelihood_rolling`."""
        return self._through("loglikelihood_rolling", texts, self.model.loglikelihood_rolling, RollingResult)

    def generate_until(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Cached `generate_until`."""
        return self._through("generate_until", requests, self.model.generate_until, GenerationResult)
