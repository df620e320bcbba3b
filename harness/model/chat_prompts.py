"""Instruct models: every prompt wrapped in the tokenizer's own chat template before it reaches the model.

The wrapper sits between the scorer and the (cached) model, so log-likelihood and generation see the
same templated context; rolling cross-entropy scores raw text and passes through unchanged.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Sequence

from harness.model.protocol import (
    GenerationRequest, GenerationResult, LanguageModel, LoglikelihoodRequest, LoglikelihoodResult, RollingResult,
)
from skill_catalog.errors import UserError

WITHOUT_TEMPLATE_NOTE = "instruct model (its tokenizer has a chat template) scored without --chat-template"
"""The note a checkpoint row carries when a chat model is scored on raw prompts."""


def has_chat_template(tokenizer: Any) -> bool:
    """Whether a tokenizer ships a chat template (the mark of an instruct or chat model)."""
    return bool(getattr(tokenizer, "chat_template", None))


def chat_renderer(tokenizer: Any, name: str = "model") -> Callable[[str], str]:
    """A function that wraps a prompt as one user turn of the tokenizer's template, ending where the
    assistant's answer starts.

    Raises:
        UserError: The tokenizer has no chat template.
    """
    if not has_chat_template(tokenizer):
        raise UserError(f"{name}: --chat-template was given but its tokenizer has no chat template; "
                        "fix: drop --chat-template for base models")

    @lru_cache(maxsize=65536)  # contexts repeat across the choices of an item
    def render(context: str) -> str:
        if not context:
            return context
        return tokenizer.apply_chat_template([{"role": "user", "content": context}], tokenize=False,
                                             add_generation_prompt=True)

    return render


class ChatPrompts:
    """The model protocol with every request's context passed through `render` first."""

    def __init__(self, model: LanguageModel, render: Callable[[str], str]) -> None:
        """Args:
            model: The model that scores the templated requests.
            render: Prompt to templated prompt (see `chat_renderer`).
        """
        self.model, self.render = model, render

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        """`loglikelihood` of each continuation after the templated context."""
        return self.model.loglikelihood([r._replace(context=self.render(r.context)) for r in requests])

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[RollingResult]:
        """Raw text, not a prompt: scored unchanged."""
        return self.model.loglikelihood_rolling(texts)

    def generate_until(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Greedy generation from the templated context."""
        return self.model.generate_until([r._replace(context=self.render(r.context)) for r in requests])
