"""Cross-entropy of a checkpoint on a text: the catalog's held-out stream (exact entropy known) or a local corpus.

Stores sums and counts (nats, tokens, bytes); per-token and per-byte rates are derived from them.
"""
from __future__ import annotations

import math
from pathlib import Path

from harness.model.protocol import LanguageModel
from harness.run.task_files import CrossEntropyTask, corpus_path
from skill_catalog.errors import UserError
from skill_catalog.training_text import iter_pieces, stream_text, text_spec_for


DOC_CHARS = 128
"""Longest document of the catalog text, in characters (ASCII: never more tokens than characters)."""


def catalog_text(task: CrossEntropyTask) -> tuple[list[str], float]:
    """The held-out stream cut at piece boundaries into documents, and its exact entropy in nats.

    Each document holds whole pieces, each followed by the stop string, and is scored after the
    model's prefix token (the stop string for the reference tokenizer), so no piece is ever cut
    from its context by a window boundary: a Bayes-optimal model pays exactly the entropy.
    """
    spec = text_spec_for(task.skill_set)
    pieces = [p for _, p in zip(range(task.pieces), iter_pieces(spec, task.seed))]
    docs, current = [], ""
    for piece in pieces:
        text = stream_text([piece], task.skill_set)[1:]  # the piece and its stop, without the leading stop
        if current and len(current) + len(text) > DOC_CHARS:
            docs.append(current)
            current = ""
        current += text
    return docs + [current] if current else docs, -sum(p.log_prob for p in pieces)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 text (byte {err.start}); fix: convert the corpus to UTF-8") from None


def corpus_texts(source: str) -> list[str]:
    """Documents of a local corpus: a .txt file, a folder of .txt files, or a saved `datasets` dataset."""
    path = corpus_path(source)
    if path.is_file():
        return [_read_text(path)]
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "state.json").exists()):
        try:
            import datasets
        except ImportError:
            raise UserError(f"{path} is a datasets folder; run `pip install -e .[datasets]` to read it") from None
        data = datasets.load_from_disk(str(path))
        if "text" not in data.column_names:
            raise UserError(f"{path} has no 'text' column; save the dataset with its text in a 'text' column")
        return [t for t in data["text"] if t]
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise UserError(f"{path} holds no .txt files; point 'source' at a .txt file or a folder of them")
        return [_read_text(f) for f in files]
    raise UserError(f"cross-entropy source {source!r} does not exist; use 'catalog' or a local path")


def measure_cross_entropy(model: LanguageModel, task: CrossEntropyTask) -> dict:
    """One row: the model's summed loss on the task's text, its token/byte counts and the exact floor."""
    if task.source == "catalog":
        docs, entropy_nats = catalog_text(task)
    else:
        docs, entropy_nats = corpus_texts(task.source), math.nan
    results = model.loglikelihood_rolling(docs)
    errors = [r.error for r in results if r.error]
    nats = -sum(r.logprob for r in results) if not errors else math.nan
    n_tokens = sum(r.n_tokens for r in results)
    return {"task": task.name, "source": task.source, "nats_sum": nats, "n_tokens": n_tokens,
            "n_bytes": sum(r.n_bytes for r in results), "n_docs": len(docs), "entropy_nats": entropy_nats,
            "entropy_floor": entropy_nats / n_tokens if n_tokens else math.nan,
            "error": "; ".join(errors) if errors else None}
