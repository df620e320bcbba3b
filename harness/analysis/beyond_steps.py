"""The analyses of composition beyond the trained k and of unseen tuples, as `analyze` steps: failure kinds,
the slingshot test and the in-context (shots) gain. Same contract as `pipeline_steps`: inputs as
arguments, (tables, summary highlights) out; a highlight named "reason" marks the step as skipped.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from harness.analysis import failure_kinds as fk, shots as sh, slingshot as sl
from harness.analysis.result import AnalysisConfig, summary_records

Output = tuple[dict[str, pd.DataFrame], dict[str, Any]]


def shot_sums(records: pd.DataFrame, clusters: pd.DataFrame) -> pd.DataFrame:
    """Cluster sums per shot count with the tuples' skill keys (the input of `slingshot` and `shots`)."""
    sums = sh.shot_sums(records, clusters)
    return sums.merge(clusters[["cluster", "skill_key"]], on="cluster", how="left")


def failure_kinds(records: pd.DataFrame, cfg: AnalysisConfig) -> tuple[Output, pd.DataFrame]:
    """Shares of right answers, format failures and skill failures per (checkpoint, mode, k, split); returns the
    format share of failures per cell for the slingshot."""
    table = fk.failure_kinds(records, cfg.metric)
    format_share = fk.format_share_of_failures(table)
    measured = table["share_none"].notna() if len(table) else pd.Series(dtype=bool)
    reason = None if measured.any() else (table["reason"].dropna().iloc[0] if len(table) and table["reason"].notna().any()
                                          else "no composite items graded part by part")
    by_k = (table[measured].assign(w_fmt=lambda t: t["share_format"] * t["n"], w_skill=lambda t: t["share_skill"] * t["n"])
            .groupby(["mode", "k"]).agg(n=("n", "sum"), w_fmt=("w_fmt", "sum"), w_skill=("w_skill", "sum"))
            .reset_index() if measured.any() else pd.DataFrame(columns=["mode", "k", "n", "w_fmt", "w_skill"]))
    shares = [{"mode": r["mode"], "k": int(r["k"]), "share_format": r["w_fmt"] / r["n"], "share_skill": r["w_skill"] / r["n"]}
              for r in by_k.to_dict("records")]
    return ({"failure_kinds": table}, {"by_mode_k": shares, "reason": reason}), format_share


def slingshot(records: pd.DataFrame, clusters: pd.DataFrame, weights: np.ndarray, ex: pd.DataFrame | None,
              cfg: AnalysisConfig, format_share: pd.DataFrame | None) -> tuple[Output, pd.DataFrame]:
    """Held-out q_2k at delta against the held-out k-curve at 2 delta (fewest shots only); returns the per-shot
    cluster sums for `shots`.

    `ex` is the excess-loss table (None when `excess` did not run); `format_share` is what `failure_kinds`
    returned (None when it did not run).
    """
    sums = shot_sums(records, clusters)
    return _slingshot(sums, weights, ex, clusters, cfg, format_share), sums


def _slingshot(sums: pd.DataFrame, weights: np.ndarray, ex: pd.DataFrame | None, clusters: pd.DataFrame,
               cfg: AnalysisConfig, format_share: pd.DataFrame | None) -> Output:
    if sums.empty:
        return {}, {"reason": "no records"}
    fewest = sums[sums["n_shots"] == sums["n_shots"].min()]
    excess = ex.set_index("checkpoint_id")["excess_loss"] if ex is not None else pd.Series(dtype=float)
    rows, summary, reason = sl.slingshot_test(fewest, weights, excess, metric=cfg.metric, level=cfg.test_level,
                                              trained_ks=cfg.trained_ks, format_share=format_share,
                                              drop=sl.inside_seen(clusters, cfg.trained_ks))
    tested = summary[summary["reason"].isna()] if len(summary) else summary
    if reason is None and tested.empty and len(summary):
        by_reason: dict[str, list[str]] = {}
        for r in summary.to_dict("records"):
            by_reason.setdefault(r["reason"], []).append(f"{r['mode']} k = {r['k']}")
        reason = "not testable on this run: " + "; ".join(f"{', '.join(cells)}: {why}" for why, cells in by_reason.items())
    return {"slingshot": rows, "slingshot_summary": summary}, {
        "tests": summary_records(summary, sl.SLINGSHOT_SUMMARY_COLUMNS), "shots": int(fewest["n_shots"].min()),
        "reason": reason}


def shots(sums: pd.DataFrame, weights: np.ndarray, ck: pd.DataFrame, cfg: AnalysisConfig) -> Output:
    """Gain per in-context example on held-out tuples per checkpoint, and its trend with loss (`sums` from
    `shot_sums`)."""
    losses = ck.set_index("checkpoint_id")["loss"]
    gains, trend, reason = sh.shots_table(sums, weights, losses, metric=cfg.metric, level=cfg.test_level)
    return {"shots_gain": gains, "shots_trend": trend}, {
        "trend": summary_records(trend, sh.SHOTS_TREND_COLUMNS),
        "n_slopes_below_0": int((pd.to_numeric(trend["slope_hi"], errors="coerce") < 0).sum()) if len(trend) else 0,
        "reason": reason if reason or np.isfinite(pd.to_numeric(gains["gain"], errors="coerce")).any()
        else "no checkpoint has a gain"}
