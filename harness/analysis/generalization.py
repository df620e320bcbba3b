"""Seen vs held-out skill combinations: competence gap (seen minus held-out) per (checkpoint, mode, k, metric).

Competence is chance-corrected; the interval is the percentile interval of the gap over the shared
item-cluster bootstrap (seen and held-out clusters are resampled within their own strata). A gap or
bound within 1e-12 of 0 is 0: equal rates summed in a different order (partial credit) differ by ~1e-17.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.analysis.cluster_sums import cell_boot
from harness.records import RATE_METRICS
from harness.analysis.stats import percentile_ci, snap_zero

GAP_COLUMNS: tuple[str, ...] = ("checkpoint_id", "mode", "k", "metric", "n_seen", "n_heldout", "seen", "heldout",
                                "gap", "gap_lo", "gap_hi", "reason")
KEYS = ["checkpoint_id", "mode", "k", "metric"]


def seen_heldout_table(sums: pd.DataFrame, weights: np.ndarray) -> pd.DataFrame:
    """Gap table for every composite cell of a rate metric that has both splits."""
    rows = sums[sums["split"].isin(["seen", "heldout"]) & sums["metric"].isin(RATE_METRICS)]
    if rows.empty:
        return pd.DataFrame(columns=list(GAP_COLUMNS))
    cells, boot = cell_boot(rows, [*KEYS, "split"], weights)
    cells["row"] = np.arange(len(cells))
    parts = [cells[cells["split"] == split][[*KEYS, "n", "competence", "row"]].rename(
        columns={"n": f"n_{split}", "competence": split, "row": f"row_{split}"}) for split in ("seen", "heldout")]
    out = parts[0].merge(parts[1], on=KEYS, how="outer").sort_values(KEYS).reset_index(drop=True)
    out["gap"] = snap_zero(out["seen"] - out["heldout"])
    ok = (out["row_seen"].notna() & out["row_heldout"].notna()).to_numpy()
    diff = np.full((len(out), boot["competence"].shape[1]), np.nan)
    diff[ok] = (boot["competence"][out.loc[ok, "row_seen"].to_numpy(int)]
                - boot["competence"][out.loc[ok, "row_heldout"].to_numpy(int)])
    out["gap_lo"], out["gap_hi"] = (snap_zero(end) for end in percentile_ci(diff, axis=1))
    out["reason"] = np.where(np.isfinite(out["gap"]), None, "needs scored seen and held-out items")
    return out.reindex(columns=list(GAP_COLUMNS))
