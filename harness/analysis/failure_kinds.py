"""Why composite answers fail: the answer's format (wrong number of parts, no stop) or a skill (a part wrong).

Per (checkpoint, mode, k, split), over the scored exact-match items graded part by part (parts_total > 0):
- ``share_none``: right answers;
- ``share_format``: wrong, with parts_predicted != parts_total or stopped == 0 (the model wrote too few or
  too many answers, or ran to the token limit);
- ``share_skill``: wrong, with the right number of parts and a stop (or an unknown stop): some part is wrong;
- ``share_unknown``: wrong, with parts_predicted unknown (-1: nothing generated and graded).
The four shares sum to 1. Records made before ``parts_predicted`` existed give NaN shares and the reason,
never 0. A zero beyond the trained k then says whether the model fails to compose or fails to keep the format.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.records import answer_failure

FAILURE_KIND_COLUMNS: tuple[str, ...] = ("checkpoint_id", "mode", "k", "split", "n", "share_none", "share_format",
                                         "share_skill", "share_unknown", "reason")
"""Per (checkpoint, mode, k, split): shares of right answers, format failures, skill failures and unknown kinds."""
KEYS = ["checkpoint_id", "mode", "k", "split"]
NO_COLUMN = "not measurable on this run: its records predate parts_predicted (format and skill failures are not told apart)"


def failure_kinds(records: pd.DataFrame, metric: str = "exact_match") -> pd.DataFrame:
    """The failure-kind shares per cell (module docstring).

    Args:
        records: prepared records (`schema.prepare_records`).
        metric: the 0/1 metric whose failures are split (exact match).
    """
    rows = records[(records["metric"] == metric) & (records["k"] > 1) & records["value"].notna()]
    if "parts_total" in rows.columns:
        rows = rows[pd.to_numeric(rows["parts_total"], errors="coerce") > 0]
    if rows.empty:
        return pd.DataFrame(columns=list(FAILURE_KIND_COLUMNS))
    if "parts_predicted" not in rows.columns:
        out = rows.groupby(KEYS, sort=True).size().rename("n").reset_index()
        return out.assign(reason=NO_COLUMN).reindex(columns=list(FAILURE_KIND_COLUMNS))
    kind = answer_failure(rows).to_numpy(dtype=object)
    kinds = pd.DataFrame({
        **{key: rows[key].to_numpy() for key in KEYS}, "n": 1.0, "share_none": (kind == "none").astype(float),
        "share_format": (kind == "format").astype(float), "share_skill": (kind == "skill").astype(float),
        "share_unknown": pd.isna(kind).astype(float)})
    out = kinds.groupby(KEYS, sort=True).sum().reset_index()
    for share in ("share_none", "share_format", "share_skill", "share_unknown"):
        out[share] = out[share] / out["n"]
    out["n"] = out["n"].astype(int)
    out["reason"] = np.where(out["share_unknown"] >= 1.0, "no failed item was graded part by part", None)
    return out.reindex(columns=list(FAILURE_KIND_COLUMNS))


def format_share_of_failures(kinds: pd.DataFrame, split: str = "heldout") -> dict[tuple[str, int], float]:
    """Per (mode, k) of `split`: format failures as a share of the failures whose kind is known (NaN: unknown)."""
    rows = kinds[kinds["split"] == split]
    out = {}
    for (mode, k), cell in rows.groupby(["mode", "k"], sort=True):
        fmt, skill = (cell[c] * cell["n"] for c in ("share_format", "share_skill"))
        known = float(fmt.sum() + skill.sum())
        out[(str(mode), int(k))] = float(fmt.sum()) / known if known > 0 and fmt.notna().all() else np.nan
    return out
