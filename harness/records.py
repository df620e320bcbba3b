"""The two tables a run writes, as types: `Record` (records.parquet) and `CheckpointRow` (checkpoints.parquet).

The fields of these frozen dataclasses *are* the Parquet schema: writers (`scoring`, `runner`) construct
them, readers (`analysis`, `report`, `gate`) take column names and derived quantities from here. Adding
a column is a field here plus its producer. Next to them: the mode and metric vocabulary, the skill
tuple's normalisation (stored as a Parquet list column, a tuple in memory) and the derivations every
reader shares (per-token loss, chance-corrected value).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

SINGLE_MODE = "single"
"""The `mode` (and `split`) of k = 1 items."""

SCORING_METRICS: dict[str, tuple[str, ...]] = {
    "exact_match": ("exact_match", "partial_credit"),
    "partial_credit": ("exact_match", "partial_credit"),
    "multiple_choice": ("mc_accuracy", "mc_accuracy_char", "mc_accuracy_byte"),
    "gold_logprob": ("gold_logprob", "greedy_match"),
}
"""Metrics recorded for each scoring mode of a task (the keys are the scoring modes)."""
SCORING_MODES: tuple[str, ...] = tuple(SCORING_METRICS)
"""The scoring modes a task may name."""
RATE_METRICS: tuple[str, ...] = ("exact_match", "partial_credit", "mc_accuracy")
"""Metrics whose value is a success fraction in [0, 1] (competence fits apply)."""
BINARY_METRICS: tuple[str, ...] = ("exact_match", "mc_accuracy")
"""Metrics whose value is 0 or 1 (exact binomial tests apply)."""
CONTINUOUS_METRICS: tuple[str, ...] = ("partial_credit", "gold_logprob")
"""Metrics used by the mirage check as smooth alternatives to exact match."""


@dataclass(frozen=True)
class Record:
    """One row of records.parquet: one checkpoint x item x metric, with sums and counts rather than means.

    A failed request is ``value`` NaN plus its ``error``, never 0.
    """

    checkpoint_id: str
    """Content hash of the checkpoint (see `checkpoints`)."""
    checkpoint_label: str
    """The checkpoint's display label."""
    task: str
    """Name of the composite task the item belongs to."""
    item_id: str
    """Stable id of the item within its task."""
    skill_set: str
    """Skill catalogue of the item (e.g. ``symbolic``)."""
    skills: tuple[str, ...]
    """The item's skills in item order (a Parquet list column)."""
    k: int
    """Number of skills of the item."""
    mode: str
    """How the skills are combined (`SINGLE_MODE` for k = 1, else chain, conjunction or direct)."""
    split: str
    """``single``, ``seen`` or ``heldout``: whether the skill tuple occurs in training text."""
    n_shots: int
    """Worked examples in the prompt."""
    metric: str
    """One of the metrics of `SCORING_METRICS`."""
    value: float
    """The metric's value (a rate metric's 0/1 or fraction; nats for ``gold_logprob``); NaN when it failed."""
    error: str | None = None
    """Why the value is NaN; None when it was measured."""
    chance: float = math.nan
    """The metric's guessing baseline (NaN when none is defined)."""
    prediction: str | None = None
    """Generated text, or the chosen choice; None when nothing was generated."""
    logprob_sum: float = math.nan
    """Summed log-probability (nats) of the gold answer."""
    n_tokens: int = 0
    """Tokens scored or generated."""
    n_bytes: int = 0
    """UTF-8 bytes of the gold answer and its stop string (gold log-prob rows)."""
    n_chars: int = 0
    """Characters of the gold answer and its stop string (gold log-prob rows)."""
    parts_correct: int = -1
    """Answer parts right in their position; -1 when not graded part by part."""
    parts_total: int = 0
    """Answer parts of the gold answer."""
    parts_predicted: int = -1
    """Answer parts in the generated text; -1 when nothing was generated and graded."""
    stopped: float = math.nan
    """Generation: 1 when it ended at a stop string or EOS, 0 when it ran to the token limit (NaN: not known)."""
    choices_only: float = math.nan
    """Multiple choice: 1 when the same rule picks the gold without the question, else 0 (NaN when unscored)."""

    def row(self) -> dict[str, Any]:
        """The record as a table row (the skill tuple as a list, as Parquet stores it)."""
        row = asdict(self)
        row["skills"] = list(self.skills)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Record:
        """The record of a table row as read back (a missing text is NaN there, None here)."""
        values = {f.name: row[f.name] for f in fields(cls)}
        for name in _OPTIONAL_TEXT:
            if isinstance(values[name], float) and math.isnan(values[name]):
                values[name] = None
        return cls(**{**values, "skills": skill_tuple(values["skills"])})


@dataclass(frozen=True)
class CheckpointRow:
    """One row of checkpoints.parquet: one checkpoint, how it was run, and its cross-entropy sums.

    A checkpoint that failed keeps every column: NaN or None where nothing was measured, and ``error``.
    """

    checkpoint_id: str
    """Hash of the weights, config.json and tokenizer files (``unresolved-<label>`` when none was found)."""
    label: str
    """Display label (``size/step``)."""
    size: str
    """Size label of the family member."""
    path: str | None = None
    """Where the checkpoint was read from."""
    architecture: str | None = None
    """Model architecture from config.json."""
    fmt: str | None = None
    """Weight file format."""
    dtype: str | None = None
    """Storage dtype of the weights."""
    params: float = math.nan
    """Parameter count (NaN when unknown)."""
    params_nonembedding: float = math.nan
    """Parameters outside the embeddings (NaN when unknown)."""
    step: float = math.nan
    """Training step (NaN when unknown)."""
    tokens_seen: float = math.nan
    """Training tokens seen (NaN when unknown)."""
    error: str | None = None
    """Why the checkpoint failed; None when it was scored."""
    tokenizer_hash: str | None = None
    """Hash of the tokenizer files."""
    compute_dtype: str | None = None
    """The dtype the weights were loaded (de-quantized) to."""
    max_length: int | None = None
    """Context length used."""
    device_map: str | None = None
    """The --device-map the model was loaded with."""
    chat_template: bool | None = None
    """Whether prompts went through the tokenizer's chat template."""
    note: str | None = None
    """A warning about how the checkpoint was run (e.g. an instruct model without its template)."""
    bos: bool | None = None
    """Whether a beginning-of-sequence token was put before every context."""
    bos_rule: str | None = None
    """Why (the --bos policy's decision)."""
    ce_window: int | None = None
    """Window length of the rolling cross-entropy."""
    drift: float = math.nan
    """Largest |batched - unbatched| log-prob difference (--check-drift; NaN when not checked)."""
    ce_task: str | None = None
    """The cross-entropy suite whose sums are the checkpoint's loss (the first one run)."""
    ce_nats_sum: float = math.nan
    """Summed negative log-likelihood of that suite's text, in nats."""
    ce_tokens: int = 0
    """Tokens of that text."""
    ce_bytes: int = 0
    """UTF-8 bytes of that text."""
    entropy_floor: float = math.nan
    """The text's generating entropy per token when known (synthetic corpora), else NaN."""
    ce_error: str | None = None
    """Why the cross-entropy failed; None when it was measured."""
    seconds: float = math.nan
    """Wall time of scoring the checkpoint."""
    cache_hits: int | None = None
    """Results read from the result cache."""
    cache_misses: int | None = None
    """Results computed."""
    prefix_reuse_off: str | None = None
    """Why prefix reuse was off; None when on."""
    tree_packing_off: str | None = None
    """Why tree packing was off; None when on."""
    chunked_logits_off: str | None = None
    """Why the chunked output layer was off; None when on."""
    generation_near_ties: int | None = None
    """Greedy generation steps whose top two logits nearly tie (None when not counted)."""

    def row(self) -> dict[str, Any]:
        """The checkpoint as a table row."""
        return asdict(self)


_OPTIONAL_TEXT = ("error", "prediction")
RECORD_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Record))
"""Columns of the records table, in order."""
CHECKPOINT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CheckpointRow))
"""Columns of the checkpoints table, in order."""
REQUIRED_RECORD_COLUMNS: tuple[str, ...] = (
    "checkpoint_id", "item_id", "skills", "k", "mode", "split", "metric", "value", "chance",
)
"""Columns without which no analysis can run."""
REQUIRED_CHECKPOINT_COLUMNS: tuple[str, ...] = ("checkpoint_id", "params", "ce_nats_sum", "ce_tokens")
"""Checkpoint columns without which no loss-based analysis can run."""


def records_frame(records: list[Record]) -> pd.DataFrame:
    """Records as a table with every column of `Record` (also when there are none)."""
    return pd.DataFrame([r.row() for r in records], columns=list(RECORD_COLUMNS))


def with_schema(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """`frame` with the schema's columns first (missing ones as NaN) and any extra columns after them."""
    return frame.reindex(columns=list(dict.fromkeys([*columns, *frame.columns])))


def skill_tuple(skills: Any) -> tuple[str, ...]:
    """A ``skills`` cell as a tuple of names in item order.

    Accepts what a reader may meet: a tuple, a list or the numpy array pandas makes of a Parquet list,
    and a ``"+"``-joined string (runs written before the list column, and hand-made frames).
    """
    if isinstance(skills, str):
        return tuple(name for name in skills.split("+") if name)
    if skills is None or (isinstance(skills, float) and math.isnan(skills)):
        return ()
    return tuple(str(name) for name in skills)


def normalize_skills(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its ``skills`` column (if any) as hashable tuples; the frame itself when already so."""
    if "skills" not in frame.columns or not len(frame):
        return frame
    column = frame["skills"]
    if all(isinstance(v, tuple) for v in column):
        return frame
    return frame.assign(skills=[skill_tuple(v) for v in column])


def skill_name(skills: tuple[str, ...]) -> str:
    """Display name of a skill tuple: the names joined by ``"+"`` in item order (the skill itself when k = 1)."""
    return "+".join(skill_tuple(skills))


def skill_set_key(skills: Any) -> str:
    """Order-free key of an item's skills: the names sorted, duplicates kept (so the key has k names).

    Items whose skills are the same multiset form one bootstrap cluster.
    """
    return "+".join(sorted(skill_tuple(skills)))


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


def checkpoint_loss(checkpoints: pd.DataFrame) -> tuple[pd.Series, pd.Series, str]:
    """(loss, entropy floor, unit) of each checkpoint row in the unit `loss_unit` picks; NaN without tokens.

    Loss is ce_nats_sum / ce_tokens, or ce_nats_sum / ce_bytes / ln 2 when tokenizers differ.
    """
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


ANSWER_FAILURES: tuple[str, ...] = ("none", "format", "skill")
"""Values of `answer_failure`: a right answer, a wrong answer format, or right format with a wrong part."""


def answer_failure(records: pd.DataFrame) -> pd.Series:
    """Why each generated answer failed: ``"format"``, ``"skill"``, or ``"none"`` when it is right (value 1).

    ``format``: a wrong answer with the wrong number of parts, or generation ran to its token limit (``stopped == 0``);
    ``skill``: a wrong answer with the right number of parts and a stop. An unknown stop (NaN) is
    judged by the parts alone. Rows not graded part by part (other metrics, failed requests:
    ``parts_predicted < 0`` or a NaN value) get None, never a class.

    Args:
        records: a records frame (any rows; ``exact_match`` and ``partial_credit`` rows are classified).
    """
    graded = (records["parts_predicted"].to_numpy() >= 0) & records["value"].notna().to_numpy() & records[
        "metric"].isin(SCORING_METRICS["exact_match"]).to_numpy()
    wrong_count = records["parts_predicted"].to_numpy() != records["parts_total"].to_numpy()
    no_stop = records["stopped"].to_numpy(dtype=float) == 0.0
    right = records["value"].to_numpy(dtype=float) >= 1.0
    label = np.select([right, wrong_count | no_stop], ["none", "format"], default="skill").astype(object)
    label[~graded] = None
    return pd.Series(label, index=records.index, name="answer_failure", dtype=object)
