"""The model protocol: log-likelihood of continuations, rolling log-likelihood and greedy generation.

Requests and results are `NamedTuple`s. The tokenizer-level semantics of lm-evaluation-harness that
every implementation shares (`encode_pair`, `rolling_windows`, `truncate_at_stop`) live here too.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Protocol, Sequence, runtime_checkable

Encode = Callable[[str], list[int]]
"""Text to token ids, without special tokens."""


class LoglikelihoodRequest(NamedTuple):
    """Score `continuation` given `context`, and with a `stop`, that the model ends it there."""

    context: str
    """Text the model conditions on; may be empty."""
    continuation: str
    """Text whose log-probability is summed."""
    stop: str = ""
    """When not empty, one more scored step after the continuation: the probability that the next token's
    text starts with `stop` (any such token, so a merged ``"\\n\\n"`` counts for ``"\\n"``) or is EOS,
    i.e. that greedy generation would end the continuation here. It counts as one token."""


class LoglikelihoodResult(NamedTuple):
    """Log-probability of one continuation; `logprob` is NaN and `error` says why when scoring failed."""

    logprob: float
    """Sum over continuation tokens of log p(token | prefix), in nats."""
    is_greedy: bool
    """Whether the argmax token equals the continuation token at every continuation position (and, with a
    stop, is a stop token after it)."""
    n_tokens: int
    """Number of continuation tokens, plus one for a stop (known even when scoring failed)."""
    error: str | None = None
    """Why the request failed, or None."""


class RollingResult(NamedTuple):
    """Log-probability of a whole text, every token scored exactly once."""

    logprob: float
    """Sum over all tokens of the text, in nats; NaN when scoring failed."""
    n_tokens: int
    """Number of tokens of the text."""
    n_bytes: int
    """Number of UTF-8 bytes of the text (for bits per byte)."""
    error: str | None = None
    """Why the request failed, or None."""


class GenerationRequest(NamedTuple):
    """Greedy generation from `context` until a stop string or `max_new_tokens`."""

    context: str
    """Prompt text; may be empty."""
    stop: tuple[str, ...] = ()
    """Generation stops at, and the text is cut before, the first of these strings."""
    max_new_tokens: int = 64
    """Upper bound on generated tokens."""


class GenerationResult(NamedTuple):
    """The generated text, cut at the first stop string."""

    text: str
    """Generated text without the prompt and without the stop string."""
    n_tokens: int
    """Number of tokens generated (up to the step where a stop string, EOS or the limit was reached)."""
    error: str | None = None
    """Why the request failed, or None (then `text` is empty)."""
    stopped: bool | None = None
    """True when generation ended at a stop string or EOS, False at the token limit, None when unknown."""


@runtime_checkable
class LanguageModel(Protocol):
    """What the harness needs from a model: the three request kinds of lm-evaluation-harness."""

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        """Score each continuation given its context; results in request order."""
        ...

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[RollingResult]:
        """Score each text as a whole, in disjoint windows of the model's maximum length."""
        ...

    def generate_until(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Generate greedily for each request; results in request order."""
        ...


class EncodedPair(NamedTuple):
    """Token ids of a context and of its continuation."""

    context: list[int]
    """Context tokens (at least one: the prefix token stands in for an empty context)."""
    continuation: list[int]
    """Continuation tokens."""


class Window(NamedTuple):
    """One rolling window: `targets` are scored given `context` (the tokens just before them)."""

    context: list[int]
    """Tokens conditioned on and not scored in this window."""
    targets: list[int]
    """Tokens scored in this window."""


def failed_loglikelihood(reason: str, n_tokens: int = 0) -> LoglikelihoodResult:
    """A failed log-likelihood result: NaN plus the reason, never 0."""
    return LoglikelihoodResult(math.nan, False, n_tokens, reason)


def split_trailing_whitespace(context: str, continuation: str) -> tuple[str, str]:
    """Move the context's trailing whitespace to the front of the continuation (lm-eval semantics).

    Returns:
        The new (context, continuation).
    """
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces == 0:
        return context, continuation
    return context[:-n_spaces], context[-n_spaces:] + continuation


def pair_texts(context: str, continuation: str) -> tuple[str, ...]:
    """The strings `encode_pair` encodes for this pair (to tokenize many pairs in one batch first)."""
    if context == "":
        return (continuation,)
    context, continuation = split_trailing_whitespace(context, continuation)
    return (context + continuation, context)


def encode_pair(
    encode: Encode, context: str, continuation: str, prefix_token: int | None, always_prefix: bool = False
) -> EncodedPair:
    """Tokenize a (context, continuation) pair as lm-evaluation-harness `HFLM._encode_pair` does.

    Trailing whitespace of the context moves onto the continuation; continuation tokens are
    ``encode(context + continuation)[len(encode(context)):]`` so merges across the boundary follow
    the tokenizer. An empty context is replaced by `prefix_token` (BOS, or EOS without BOS).

    Args:
        encode: Tokenizer function without special tokens.
        context: Context text.
        continuation: Continuation text.
        prefix_token: Token that stands in for an empty context.
        always_prefix: Start every context with `prefix_token` (the BOS policy of Gemma-style models;
            lm-eval's ``add_bos_token=True``).

    Raises:
        ValueError: The context is empty and there is no prefix token.
    """
    if context == "":
        if prefix_token is None:
            raise ValueError("empty context and the tokenizer has neither BOS nor EOS token")
        return EncodedPair([prefix_token], encode(continuation))
    context, continuation = split_trailing_whitespace(context, continuation)
    whole = encode(context + continuation)
    n_context = len(encode(context))
    start = [prefix_token] if always_prefix and prefix_token is not None else []
    return EncodedPair(start + whole[:n_context], whole[n_context:])


def rolling_windows(
    tokens: Sequence[int], prefix_token: int, max_length: int, context_len: int = 1
) -> list[Window]:
    """Disjoint scoring windows over `tokens` (lm-eval `get_rolling_token_windows` + `make_disjoint_window`).

    Every token is a target in exactly one window; the first token is predicted from `prefix_token`.
    Each window's context plus targets, minus the last target, fits in `max_length` model inputs.

    Args:
        tokens: Token ids of the whole text.
        prefix_token: Token the first window conditions on (BOS, or EOS without BOS).
        max_length: Maximum number of model inputs per window.
        context_len: Minimum number of context tokens in every window after the first.
    """
    if not 1 <= context_len <= max_length:
        raise ValueError(f"need 1 <= context_len <= max_length, got {context_len}, {max_length}")
    tokens = list(tokens)
    if not tokens:
        return []
    pred_len = max_length - context_len + 1
    first = min(max_length, len(tokens))
    windows = [Window([prefix_token], tokens[:first])]
    predicted = first
    while predicted < len(tokens):
        n_pred = min(len(tokens) - predicted, pred_len)
        end = predicted + n_pred
        inputs = tokens[max(end - max_length - 1, 0):end - 1]
        windows.append(Window(inputs[: len(inputs) - (n_pred - 1)], tokens[end - n_pred:end]))
        predicted += n_pred
    return windows


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` before the earliest occurrence of any stop string.

    Returns:
        The (possibly) shortened text and whether a stop string was found.
    """
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text, False) if cut < 0 else (text[:cut], True)
