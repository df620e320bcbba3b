"""Column names of the runner's tidy tables and the few helpers that read them.

The analyzer only consumes `records` (one row per checkpoint x item x metric) and `checkpoints`
(one row per checkpoint); this module checks their columns and derives per-token loss and skill keys.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

RECORD_COLUMNS: tuple[str, ...] = (
    "checkpoint_id", "item_id", "skill_set", "skills", "k", "mode", "split", "n_shots",
    "metric", "value", "error", "chance", "n_tokens", "parts_correct", "parts_total", "choices_only",
)
"""Columns the runner writes into the records table."""
REQUIRED_RECORD_COLUMNS: tuple[str, ...] = (
    "checkpoint_id", "item_id", "skills", "k", "mode", "split", "metric", "value", "chance",
)
"""Columns without which no analysis can run."""
CHECKPOINT_COLUMNS: tuple[str, ...] = (
    "checkpoint_id", "label", "size", "params", "params_nonembedding", "step", "tokens_seen",
    "ce_nats_sum", "ce_tokens", "entropy_floor",
)
"""Columns the runner writes into the checkpoints table."""
REQUIRED_CHECKPOINT_COLUMNS: tuple[str, ...] = ("checkpoint_id", "params", "ce_nats_sum", "ce_tokens")
"""Checkpoint columns without which no loss-based analysis can run."""

RATE_METRICS: tuple[str, ...] = ("exact_match", "partial_credit", "mc_accuracy")
"""Metrics whose value is a success fraction in [0, 1] (competence fits apply)."""
BINARY_METRICS: tuple[str, ...] = ("exact_match", "mc_accuracy")
"""Metrics whose value is 0 or 1 (exact binomial tests apply)."""
CONTINUOUS_METRICS: tuple[str, ...] = ("partial_credit", "gold_logprob")
"""Metrics used by the mirage check as smooth alternatives to exact match."""
SINGLE_MODE = "single"
"""The `mode` (and `split`) of k = 1 items."""
CELL_KEYS: tuple[str, ...] = ("mode", "k", "metric")
"""A competence curve is one (mode, k, metric) cell followed across checkpoints."""


def split_skills(skills: str) -> tuple[str, ...]:
    """Splits a ``skills`` cell (names joined by ``"+"`` in item order) into a tuple.

    Args:
        skills: e.g. ``"rev+sft"``.

    Returns:
        The skill names in item order, e.g. ``("rev", "sft")``; empty for an empty string.
    """
    return tuple(name for name in str(skills).split("+") if name)


def skill_set_key(skills: str) -> str:
    """Order-free key of an item's skills: the names sorted, duplicates kept (so the key has k names).

    Items whose skills are the same multiset form one bootstrap cluster.
    """
    return "+".join(sorted(split_skills(skills)))


def check_columns(frame: pd.DataFrame, required: tuple[str, ...], name: str) -> None:
    """Raises ValueError naming the missing columns of a runner table."""
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ValueError(f"{name} table lacks columns {missing}; it must come from the runner's tidy output")


def prepare_records(records: pd.DataFrame) -> pd.DataFrame:
    """Returns the records columns the analyzer uses, with plain dtypes and an order-free skill key.

    Adds ``skill_key`` (see `skill_set_key`). Values are floats; NaN stays NaN.
    """
    check_columns(records, REQUIRED_RECORD_COLUMNS, "records")
    keep = [c for c in RECORD_COLUMNS if c in records.columns]
    out = records[keep].copy()
    for column in ("checkpoint_id", "item_id", "skills", "mode", "split", "metric"):
        out[column] = out[column].astype(str)
    out["k"] = out["k"].astype(int)
    out["value"] = pd.to_numeric(out["value"], errors="coerce").astype(float)
    out["chance"] = pd.to_numeric(out["chance"], errors="coerce").astype(float)
    unique = pd.unique(out["skills"])
    keys = dict(zip(unique, (skill_set_key(s) for s in unique)))
    out["skill_key"] = out["skills"].map(keys)
    return out


def loss_unit(checkpoints: pd.DataFrame) -> str:
    """``"bits/byte"`` when the checkpoints' tokenizers differ (their per-token losses count different units)
    and every checkpoint with a loss has a byte count; else ``"nats/token"``."""
    if "tokenizer_hash" not in checkpoints.columns or "ce_bytes" not in checkpoints.columns:
        return "nats/token"
    if checkpoints["tokenizer_hash"].dropna().nunique() < 2:
        return "nats/token"
    tokens = pd.to_numeric(checkpoints["ce_tokens"], errors="coerce")
    n_bytes = pd.to_numeric(checkpoints["ce_bytes"], errors="coerce")
    return "bits/byte" if (n_bytes[tokens > 0] > 0).all() else "nats/token"


def prepare_checkpoints(checkpoints: pd.DataFrame) -> pd.DataFrame:
    """Returns one row per checkpoint with its loss ``loss`` in the unit ``loss_unit`` (see `loss_unit`):
    ce_nats_sum / ce_tokens, or ce_nats_sum / ce_bytes / ln 2 when tokenizers differ within the family
    (``entropy_floor`` converted alike).

    Missing optional columns (step, tokens_seen, entropy_floor, params_nonembedding) are NaN.
    """
    check_columns(checkpoints, REQUIRED_CHECKPOINT_COLUMNS, "checkpoints")
    out = checkpoints.copy()
    out["checkpoint_id"] = out["checkpoint_id"].astype(str)
    if out["checkpoint_id"].duplicated().any():
        raise ValueError("checkpoints table lists a checkpoint_id twice; each checkpoint needs one row")
    for column in ("params_nonembedding", "step", "tokens_seen", "entropy_floor"):
        if column not in out.columns:
            out[column] = np.nan
    for column in ("label", "size"):
        if column not in out.columns:
            out[column] = out["checkpoint_id"]
    out["loss"], out["entropy_floor"], out["loss_unit"] = checkpoint_loss(out)
    return out.reset_index(drop=True)


def checkpoint_loss(checkpoints: pd.DataFrame) -> tuple[pd.Series, pd.Series, str]:
    """(loss, entropy floor, unit) of each checkpoint row in the unit `loss_unit` picks; NaN without tokens."""
    unit = loss_unit(checkpoints)
    tokens = pd.to_numeric(checkpoints["ce_tokens"], errors="coerce").astype(float)
    nats = pd.to_numeric(checkpoints["ce_nats_sum"], errors="coerce").astype(float)
    floor = pd.to_numeric(checkpoints["entropy_floor"], errors="coerce").astype(float)
    loss = nats / tokens.where(tokens > 0, np.nan)
    if unit == "bits/byte":
        n_bytes = pd.to_numeric(checkpoints["ce_bytes"], errors="coerce").astype(float)
        per_byte = tokens / n_bytes.where(n_bytes > 0, np.nan) / np.log(2)
        loss, floor = loss * per_byte, floor * per_byte
    return loss, floor, unit
