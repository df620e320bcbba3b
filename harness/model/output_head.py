"""The output layer run only where scores are needed, so scoring memory does not grow with the vocabulary.

Full-vocabulary logits at every position take rows x positions x vocabulary floats (16 GB for 32 rows of
500 tokens and a 262k vocabulary). During the forward pass a pre-hook narrows the output layer's input
to the first position and keeps the final hidden states; `batching.gather` applies the layer to the
positions it scores, a bounded chunk at a time. What a model does after its output layer is reproduced
for Gemma's final soft-capping and checked once per model (see `TokenScoring`) against the logits
the forward pass still computes at the first position.
"""
from __future__ import annotations

from typing import Any, Callable

import torch


def output_head(model: Any) -> tuple[Any, Callable[[torch.Tensor], torch.Tensor]] | None:
    """The model's output layer and the function from final hidden states to logits, or None without one."""
    layer = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not isinstance(layer, torch.nn.Module):
        return None
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    cap = getattr(config, "final_logit_softcapping", None)

    def logits(hidden: torch.Tensor) -> torch.Tensor:
        out = layer(hidden)
        return torch.tanh(out / cap) * cap if cap else out

    return layer, logits


def narrowed_forward(model: Any, layer: Any, kwargs: dict[str, Any]) -> tuple[Any, torch.Tensor | None]:
    """Run `model` with its output layer `layer` computing only the first position.

    Returns:
        The model output (its logits cover the first position only) and the final hidden states of
        every position, or None when the layer was not called exactly once with them.
    """
    captured: list[torch.Tensor] = []

    def narrow(module: Any, args: tuple) -> tuple | None:
        if not args or not isinstance(args[0], torch.Tensor) or args[0].dim() != 3:
            return None
        captured.append(args[0])
        return (args[0][:, :1], *args[1:])

    handle = layer.register_forward_pre_hook(narrow)
    try:
        out = model(**kwargs)
    finally:
        handle.remove()
    return out, captured[0] if len(captured) == 1 else None


def head_error(hidden: torch.Tensor, logits: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """Largest |log-softmax difference| at the first position between `head(hidden)` and the model's own logits.

    Returns:
        The difference over rows whose model logits are finite; NaN when none is (no verdict), inf
        when the shapes differ.
    """
    theirs = logits[:, 0].float()
    ours = head(hidden[:, 0]).float()
    if ours.shape != theirs.shape:
        return float("inf")
    ok = torch.isfinite(theirs).all(-1)
    if not bool(ok.any()):
        return float("nan")
    diff = (torch.log_softmax(ours[ok], -1) - torch.log_softmax(theirs[ok], -1)).abs().max()
    return float(diff) if bool(torch.isfinite(diff)) else float("inf")
