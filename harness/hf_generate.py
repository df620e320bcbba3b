"""Greedy generation of a batch of equal-length contexts, each row stopped at its own stop strings or limit."""
from __future__ import annotations

from typing import Any, Sequence

import torch

from harness.offline import enforce_offline

enforce_offline()  # before transformers reads the hub settings at import
import transformers  # noqa: E402

from harness.model import GenerationRequest, GenerationResult, truncate_at_stop


class StopStrings(transformers.StoppingCriteria):
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


def generation_failure(context: list[int | None], max_new_tokens: int, max_length: int) -> GenerationResult | None:
    """The empty result of a request that cannot be generated, else None.

    Args:
        context: Context token ids (``[None]`` for an empty context without BOS/EOS token).
        max_new_tokens: The request's token limit.
        max_length: Maximum model inputs per row.
    """
    if context == [None] or max_new_tokens < 1:
        return GenerationResult("", 0, "empty context without BOS/EOS token, or max_new_tokens < 1")
    if len(context) + max_new_tokens > max_length:
        reason = f"too long: {len(context)} context + {max_new_tokens} new tokens"
        return GenerationResult("", 0, f"{reason} > max_length {max_length}")
    return None


@torch.inference_mode()
def generate_batch(
    model: Any, tokenizer: Any, ids: torch.Tensor, requests: Sequence[GenerationRequest], pad_token: int
) -> list[GenerationResult]:
    """Greedy continuations of contexts of one length, no padding needed.

    Args:
        model: A transformers causal LM.
        tokenizer: Its tokenizer.
        ids: Context token ids, one row per request, on the model's device.
        requests: The requests of the rows (their stop strings and token limits).
        pad_token: Token id that fills rows which finished early.

    Returns:
        One result per row; a row with non-finite logits gets empty text and a reason.
    """
    limits = [r.max_new_tokens for r in requests]
    stopper = StopStrings(tokenizer, ids.shape[1], [r.stop for r in requests], limits)
    config = transformers.GenerationConfig(
        do_sample=False, num_beams=1, max_new_tokens=max(r.max_new_tokens for r in requests),
        eos_token_id=tokenizer.eos_token_id, pad_token_id=pad_token,
        output_logits=True, return_dict_in_generate=True,
    )
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config,
                         stopping_criteria=transformers.StoppingCriteriaList([stopper]))
    return [_row_result(tokenizer, out, b, ids.shape[1], stopper.done_at[b], request)
            for b, request in enumerate(requests)]


def _row_result(
    tokenizer: Any, out: Any, b: int, start: int, done_at: int | None, request: GenerationRequest
) -> GenerationResult:
    """Row `b` of a generate() output, cut at its stop, its limit or the first EOS."""
    new = out.sequences[b, start:].tolist()
    n = min(done_at or len(new), len(new), request.max_new_tokens)
    if tokenizer.eos_token_id in new[:n]:
        n = new.index(tokenizer.eos_token_id) + 1
    if not all(torch.isfinite(step[b]).all() for step in out.logits[:n]):
        return GenerationResult("", n, "non-finite logits (NaN or inf) during generation")
    text, _ = truncate_at_stop(tokenizer.decode(new[:n], skip_special_tokens=True), request.stop)
    return GenerationResult(text, n)
