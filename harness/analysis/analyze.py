"""`analyze`: every analysis of a checkpoint family's records, run in order, each one allowed to fail alone.

An analysis that cannot run (too few checkpoints, no composite items, all values NaN, ...) leaves
its tables empty (with their columns) and records the reason in the summary; it never raises and
never emits 0.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from harness.analysis import beyond_steps, pipeline_steps as steps
from harness.analysis.bootstrap import assign_clusters, blas_single_thread, cluster_design, rng_for
from harness.analysis.cluster_sums import cluster_sums
from harness.analysis.result import TABLE_COLUMNS, TABLES, AnalysisConfig, AnalysisResult, jsonable
from harness.analysis.schema import prepare_checkpoints, prepare_records

Step = Callable[[dict[str, Any]], tuple[dict[str, pd.DataFrame], dict[str, Any]]]
STEPS: tuple[tuple[str, Step], ...] = (
    ("scaling", steps.scaling), ("excess_loss", steps.excess), ("competence", steps.competence),
    ("competence_fits", steps.competence_fits), ("emergence", steps.emergence),
    ("product_rule", steps.product_rule), ("ag_failure", steps.ag_failure), ("ag_tail_bound", steps.ag_tail_bound),
    ("collapse", steps.collapse), ("ag_cor13", steps.ag_cor13), ("composable_k", steps.composable), ("seen_heldout", steps.seen_heldout),
    ("paired", steps.paired), ("failure_kinds", beyond_steps.failure_kinds),
    ("slingshot", beyond_steps.slingshot), ("shots", beyond_steps.shots),
)
"""Analyses in run order; later ones read what earlier ones left in the state."""


def _prepare(records: pd.DataFrame, checkpoints: pd.DataFrame, seed: int, n_boot: int,
             config: AnalysisConfig) -> dict[str, Any]:
    recs, ckpts = prepare_records(records), prepare_checkpoints(checkpoints)
    known = recs["checkpoint_id"].isin(set(ckpts["checkpoint_id"]))
    recs = recs[known].reset_index(drop=True)
    clusters, codes = assign_clusters(recs)
    design = cluster_design(clusters, n_boot, rng_for(seed, "items"))
    return {"records": recs, "checkpoints": ckpts, "clusters": clusters, "weights": design.weights,
            "sums": cluster_sums(recs, codes), "config": config, "seed": seed, "n_boot": n_boot,
            "n_unknown_checkpoint": int((~known).sum())}


def _overview(state: dict[str, Any], n_input: int) -> dict[str, Any]:
    recs = state["records"]
    failed = recs["value"].isna()
    return {
        "n_records": n_input, "n_records_used": len(recs), "n_failed_records": int(failed.sum()),
        "failed_by_error": recs.loc[failed, "error"].fillna("no reason given").value_counts().to_dict()
        if "error" in recs.columns else {},
        "n_records_unknown_checkpoint": state["n_unknown_checkpoint"],
        "n_checkpoints": int(len(state["checkpoints"])), "metrics": sorted(recs["metric"].unique()),
        "modes": sorted(recs["mode"].unique()), "ks": sorted(int(k) for k in recs["k"].unique()),
        "seed": state["seed"], "n_boot": state["n_boot"],
    }


def _run(name: str, step: Step, state: dict[str, Any], tables: dict[str, pd.DataFrame],
         analyses: dict[str, Any]) -> None:
    try:
        produced, highlights = step(state)
    except Exception as exc:  # one analysis failing must not stop the others; its reason is kept
        analyses[name] = {"status": "error", "reason": f"unexpected {type(exc).__name__}: {exc}"}
        return
    tables.update(produced)
    reason = highlights.pop("reason", None)
    why = highlights.pop("missing_reasons", {})
    entry = {"status": "ok" if reason is None else "skipped", "reason": reason, **highlights}
    missing: dict[str, str] = {}
    analyses[name] = jsonable(entry, missing, reason=reason)
    if missing:
        analyses[name]["missing"] = {k: r if reason else _why_missing(analyses[name], k, why, r)
                                     for k, r in missing.items()}


def _why_missing(entry: dict[str, Any], path: str, why: dict[str, str], default: str) -> str:
    """Reason for one missing summary value, e.g. at "fits[2].E": the step's reason for that exact path,
    else the reason of the record holding it (a table row), else the step's reason for its last key, else
    `default`."""
    parent, _, key = path.rpartition(".")
    record: Any = entry
    for part in parent.replace("[", ".").replace("]", "").split(".") if parent else []:
        record = record[int(part)] if isinstance(record, list) else record.get(part, {})
    own = record.get("reason") if isinstance(record, dict) and record is not entry else None
    return why.get(path) or own or why.get(key, default)


def analyze(records: pd.DataFrame, checkpoints: pd.DataFrame, *, seed: int = 0, n_boot: int = 200,
            config: AnalysisConfig | None = None) -> AnalysisResult:
    """Runs every analysis on one checkpoint family.

    Args:
        records: the runner's records table (one row per checkpoint x item x metric).
        checkpoints: the runner's checkpoints table (one row per checkpoint).
        seed: seed of every bootstrap (each analysis draws from its own named stream).
        n_boot: bootstrap replicates for every interval.
        config: further settings; defaults to `AnalysisConfig()`.

    Returns:
        An `AnalysisResult`: one tidy DataFrame per table in `result.TABLES` (empty with a reason in
        the summary when its analysis could not run) and a JSON-serializable summary.

    Raises:
        ValueError: when a table lacks the runner's required columns or n_boot < 1.
    """
    config = config or AnalysisConfig()
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    with blas_single_thread():
        state = _prepare(records, checkpoints, seed, n_boot, config)
        summary: dict[str, Any] = jsonable(_overview(state, len(records)))
        analyses: dict[str, Any] = {}
        tables: dict[str, pd.DataFrame] = {}
        if state["records"].empty:
            analyses["all"] = {"status": "skipped", "reason": "no records belong to a listed checkpoint"}
        else:
            for name, step in STEPS:
                _run(name, step, state, tables, analyses)
    summary["analyses"] = analyses
    frames = {name: tables.get(name, pd.DataFrame()).reindex(columns=list(TABLE_COLUMNS[name])).reset_index(drop=True)
              for name in TABLES}
    return AnalysisResult(**frames, summary=summary)

