"""The analyses of composition beyond the trained k and of unseen tuples, as `analyze` steps: failure kinds,
the slingshot test and the in-context (shots) gain. Same contract as `pipeline_steps`: state in,
(tables, summary highlights) out; a highlight named "reason" marks the step as skipped.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from harness.analysis import failure_kinds as fk, shots as sh, slingshot as sl
from harness.analysis.result import summary_records

State = dict[str, Any]
Output = tuple[dict[str, pd.DataFrame], dict[str, Any]]


def _shot_sums(state: State) -> pd.DataFrame:
    """Cluster sums per shot count with the tuples' skill keys, computed once and kept in the state."""
    if "shot_sums" not in state:
        sums = sh.shot_sums(state["records"], state["clusters"])
        state["shot_sums"] = sums.merge(state["clusters"][["cluster", "skill_key"]], on="cluster", how="left")
    return state["shot_sums"]


def failure_kinds(state: State) -> Output:
    """Shares of right answers, format failures and skill failures per (checkpoint, mode, k, split)."""
    table = fk.failure_kinds(state["records"], state["config"].metric)
    state["format_share"] = fk.format_share_of_failures(table)
    measured = table["share_none"].notna() if len(table) else pd.Series(dtype=bool)
    reason = None if measured.any() else (table["reason"].dropna().iloc[0] if len(table) and table["reason"].notna().any()
                                          else "no composite items graded part by part")
    by_k = (table[measured].assign(w_fmt=lambda t: t["share_format"] * t["n"], w_skill=lambda t: t["share_skill"] * t["n"])
            .groupby(["mode", "k"]).agg(n=("n", "sum"), w_fmt=("w_fmt", "sum"), w_skill=("w_skill", "sum"))
            .reset_index() if measured.any() else pd.DataFrame(columns=["mode", "k", "n", "w_fmt", "w_skill"]))
    shares = [{"mode": r["mode"], "k": int(r["k"]), "share_format": r["w_fmt"] / r["n"], "share_skill": r["w_skill"] / r["n"]}
              for r in by_k.to_dict("records")]
    return {"failure_kinds": table}, {"by_mode_k": shares, "reason": reason}


def slingshot(state: State) -> Output:
    """Held-out q_2k at delta against the held-out k-curve at 2 delta (fewest shots only)."""
    sums, cfg = _shot_sums(state), state["config"]
    if sums.empty:
        return {}, {"reason": "no records"}
    fewest = sums[sums["n_shots"] == sums["n_shots"].min()]
    excess = state["excess"].set_index("checkpoint_id")["excess_loss"] if "excess" in state else pd.Series(dtype=float)
    rows, summary, reason = sl.slingshot_test(fewest, state["weights"], excess, metric=cfg.metric, level=cfg.test_level,
                                              trained_ks=cfg.trained_ks, format_share=state.get("format_share"),
                                              drop=sl.inside_seen(state["clusters"], cfg.trained_ks))
    tested = summary[summary["reason"].isna()] if len(summary) else summary
    if reason is None and tested.empty and len(summary):
        by_reason: dict[str, list[str]] = {}
        for r in summary.to_dict("records"):
            by_reason.setdefault(r["reason"], []).append(f"{r['mode']} k = {r['k']}")
        reason = "not testable on this run: " + "; ".join(f"{', '.join(cells)}: {why}" for why, cells in by_reason.items())
    return {"slingshot": rows, "slingshot_summary": summary}, {
        "tests": summary_records(summary, sl.SLINGSHOT_SUMMARY_COLUMNS), "shots": int(fewest["n_shots"].min()),
        "reason": reason}


def shots(state: State) -> Output:
    """Gain per in-context example on held-out tuples per checkpoint, and its trend with loss."""
    sums = _shot_sums(state)
    losses = state["checkpoints"].set_index("checkpoint_id")["loss"]
    gains, trend, reason = sh.shots_table(sums, state["weights"], losses, metric=state["config"].metric,
                                          level=state["config"].test_level)
    return {"shots_gain": gains, "shots_trend": trend}, {
        "trend": summary_records(trend, sh.SHOTS_TREND_COLUMNS),
        "n_slopes_below_0": int((pd.to_numeric(trend["slope_hi"], errors="coerce") < 0).sum()) if len(trend) else 0,
        "reason": reason if reason or np.isfinite(pd.to_numeric(gains["gain"], errors="coerce")).any()
        else "no checkpoint has a gain"}
