"""`ReportData`: what the plots and the HTML read — the analysis summary, its tidy tables, checkpoints and records.

The few derived views here (checkpoint order, labels, single-skill accuracy) are plain aggregations for
display; every estimate comes from the analyzer's tables.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.io import ALL_COLUMNS as TABLE_COLUMNS
from harness.records import SINGLE_MODE, checkpoint_loss, skill_name
from harness.report.fmt import short_id


@dataclass(frozen=True)
class ReportData:
    """Everything a figure or a section needs."""

    run_id: str
    """Name of the run directory."""
    summary: dict[str, Any]
    """The analysis summary (analysis.json without the run id)."""
    tables: dict[str, pd.DataFrame]
    """The analyzer's tidy tables by name (each present, possibly empty)."""
    checkpoints: pd.DataFrame
    """One row per checkpoint, ordered from highest to lowest loss (NaN loss last); see `checkpoints_for_report`."""
    records: pd.DataFrame = field(default_factory=pd.DataFrame)
    """The run's records table (raw)."""
    metric: str = "exact_match"
    """Primary metric of the analysis."""
    pair: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Paired comparison (`paired.PAIRED_COLUMNS`) of the two checkpoints the report shows side by side."""
    pair_note: str = ""
    """Why that pair was chosen, or why there is none."""
    history: dict[str, pd.DataFrame] = field(default_factory=dict)
    """Monitoring history next to the run (``trend``, ``changes``; see `history_view`), empty when none."""

    def table(self, name: str) -> pd.DataFrame:
        """A tidy table by name, empty with its columns when absent."""
        frame = self.tables.get(name)
        return frame if frame is not None else pd.DataFrame(columns=list(TABLE_COLUMNS.get(name, ())))

    def analysis(self, name: str) -> dict[str, Any]:
        """The summary entry of one analysis (the entry "all" when no analysis ran, else {})."""
        analyses = self.summary.get("analyses", {})
        return dict(analyses.get(name) or analyses.get("all") or {})

    def reason(self, name: str, fallback: str) -> str:
        """Why an analysis did not produce its result: the summary's reason, else `fallback`."""
        return self.analysis(name).get("reason") or fallback

    def labels(self) -> dict[str, str]:
        """Checkpoint id -> display label."""
        return dict(zip(self.checkpoints["checkpoint_id"], self.checkpoints["label"]))

    def label(self, checkpoint_id: Any) -> str:
        """Display label of one checkpoint id (a short id when unknown)."""
        return self.labels().get(str(checkpoint_id), short_id(checkpoint_id))

    def order(self) -> list[str]:
        """Checkpoint ids from highest to lowest loss."""
        return list(self.checkpoints["checkpoint_id"])


def checkpoints_for_report(checkpoints: pd.DataFrame, excess: pd.DataFrame | None = None) -> pd.DataFrame:
    """Checkpoints with per-token loss, excess loss and a unique label, from worst to best loss.

    Args:
        checkpoints: the run's checkpoints table.
        excess: the analyzer's `excess_loss` table (adds excess_loss, excess_lo, excess_hi, E).

    Returns:
        The table with `loss` (in `loss_unit`: nats/token, or bits/byte when tokenizers differ; NaN when no
        tokens were scored) and unique `label`.
    """
    out = checkpoints.copy()
    if "checkpoint_id" not in out.columns:
        out["checkpoint_id"] = pd.Series(dtype=str)
    out["checkpoint_id"] = out["checkpoint_id"].astype(str)
    for column in ("label", "params", "params_nonembedding", "ce_nats_sum", "ce_tokens", "ce_bytes", "step",
                   "tokens_seen", "entropy_floor", "error", "size"):
        if column not in out.columns:
            out[column] = np.nan
    labels = out["label"].where(out["label"].notna(), out["checkpoint_id"].map(short_id)).astype(str)
    dup = labels.duplicated(keep=False)
    out["label"] = np.where(dup, labels + "#" + out["checkpoint_id"].map(short_id), labels)
    out["loss"], out["entropy_floor"], out["loss_unit"] = checkpoint_loss(out)
    cols = ["checkpoint_id", "E", "excess_loss", "excess_lo", "excess_hi", "reason"]
    if excess is not None and len(excess):
        ex = excess.reindex(columns=cols).rename(columns={"reason": "excess_reason"})
        out = out.merge(ex.astype({"checkpoint_id": str}), on="checkpoint_id", how="left")
    else:
        out = out.assign(E=np.nan, excess_loss=np.nan, excess_lo=np.nan, excess_hi=np.nan, excess_reason=None)
    return out.sort_values("loss", ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def single_skill_accuracy(records: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean k = 1 score per (skill, checkpoint) over scored items (NaN where every item failed).

    Returns:
        A skills x checkpoint_id frame of means.
    """
    needed = {"k", "mode", "metric", "skills", "checkpoint_id", "value"}
    if records.empty or not needed <= set(records.columns):
        return pd.DataFrame()
    rows = records[(records["k"] == 1) & (records["mode"] == SINGLE_MODE) & (records["metric"] == metric)]
    if rows.empty:
        return pd.DataFrame()
    values = pd.to_numeric(rows["value"], errors="coerce")
    frame = rows.assign(value=values, checkpoint_id=rows["checkpoint_id"].astype(str),
                        skills=[skill_name(s) for s in rows["skills"]])
    return frame.pivot_table(index="skills", columns="checkpoint_id", values="value", aggfunc="mean", dropna=False)
