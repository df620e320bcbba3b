"""Seen vs held-out skill combinations: competence gap (seen minus held-out) per (checkpoint, mode, k, metric).

Competence is chance-corrected; the interval is the percentile interval of the gap over the shared
item-cluster bootstrap (seen and held-out clusters are resampled within their own strata), expanded for
few clusters (Hesterberg's `expanded_level` of the smaller split's tuple count: a plain 95% interval over
10 tuples per split excluded a true zero gap in 7.3% of cells in the calibration study). A gap or
bound within 1e-12 of 0 is 0: equal rates summed in a different order (partial credit) differ by ~1e-17.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.analysis.cluster_sums import cell_boot
from harness.records import RATE_METRICS
from harness.analysis.stats import expanded_level, percentile_ci, snap_zero

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
    clusters = rows.groupby([*KEYS, "split"]).size().unstack("split")  # one row of `sums` per cluster
    fewest = out[KEYS].merge(clusters.min(axis=1).rename("g").reset_index(), on=KEYS, how="left")["g"].to_numpy()
    lo, hi = np.full(len(out), np.nan), np.full(len(out), np.nan)
    for g in np.unique(fewest[np.isfinite(fewest)]):
        pick = fewest == g
        level = expanded_level(int(g))
        if np.isfinite(level):
            lo[pick], hi[pick] = percentile_ci(diff[pick], level=level, axis=1)
    out["gap_lo"], out["gap_hi"] = snap_zero(lo), snap_zero(hi)
    out["reason"] = np.where(np.isfinite(out["gap"]), None, "needs scored seen and held-out items")
    return out.reindex(columns=list(GAP_COLUMNS))
