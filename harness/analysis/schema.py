"""How the analyzer reads the runner's tidy tables: column checks, plain dtypes, loss and skill keys.

The analyzer only consumes `records` (one row per checkpoint x item x metric) and `checkpoints`
(one row per checkpoint), whose schemas, vocabulary and derivations live in `harness.records`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.records import (REQUIRED_CHECKPOINT_COLUMNS, REQUIRED_RECORD_COLUMNS, checkpoint_loss, normalize_skills,
                             skill_set_key, skill_tuple)

ANALYSED_RECORD_COLUMNS: tuple[str, ...] = (
    "checkpoint_id", "item_id", "skill_set", "skills", "k", "mode", "split", "n_shots",
    "metric", "value", "error", "chance", "n_tokens", "parts_correct", "parts_total", "parts_predicted",
    "stopped", "choices_only",
)
"""The columns of `records.Record` the analyzer keeps."""
CELL_KEYS: tuple[str, ...] = ("mode", "k", "metric")
"""A competence curve is one (mode, k, metric) cell followed across checkpoints."""


def split_skills(skills) -> tuple[str, ...]:
    """A ``skills`` cell (a tuple, a Parquet list, or names joined by ``"+"``) as a tuple in item order.

    Args:
        skills: e.g. ``("rev", "sft")`` or ``"rev+sft"``.

    Returns:
        The skill names in item order, e.g. ``("rev", "sft")``; empty for an empty string.
    """
    return skill_tuple(skills)


def check_columns(frame: pd.DataFrame, required: tuple[str, ...], name: str) -> None:
    """Raises ValueError naming the missing columns of a runner table."""
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ValueError(f"{name} table lacks columns {missing}; it must come from the runner's tidy output")


def prepare_records(records: pd.DataFrame) -> pd.DataFrame:
    """Returns the records columns the analyzer uses, with plain dtypes and an order-free skill key.

    ``skills`` become tuples (see `records.normalize_skills`); adds ``skill_key`` (see `skill_set_key`).
    Values are floats; NaN stays NaN.
    """
    check_columns(records, REQUIRED_RECORD_COLUMNS, "records")
    keep = [c for c in ANALYSED_RECORD_COLUMNS if c in records.columns]
    out = normalize_skills(records[keep].copy())
    for column in ("checkpoint_id", "item_id", "mode", "split", "metric"):
        out[column] = out[column].astype(str)
    out["k"] = out["k"].astype(int)
    out["value"] = pd.to_numeric(out["value"], errors="coerce").astype(float)
    out["chance"] = pd.to_numeric(out["chance"], errors="coerce").astype(float)
    unique = pd.unique(out["skills"])
    keys = dict(zip(unique, (skill_set_key(s) for s in unique)))
    out["skill_key"] = [keys[s] for s in out["skills"]]
    return out


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
