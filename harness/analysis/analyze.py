"""`analyze`: every analysis of a checkpoint family's records, run in order, each one allowed to fail alone.

An analysis that cannot run (too few checkpoints, no composite items, all values NaN, ...) leaves
its tables empty (with their columns) and records the reason in the summary; it never raises and
never emits 0.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis import beyond_steps, pipeline_steps as steps
from harness.analysis.bootstrap import assign_clusters, blas_single_thread, cluster_design, rng_for
from harness.analysis.cluster_sums import cluster_sums
from harness.analysis.result import (TABLE_COLUMNS, TABLES, AnalysisConfig, AnalysisResult, jsonable,
                                     summary_entry)
from harness.analysis.schema import prepare_checkpoints, prepare_records

STEP_NAMES: tuple[str, ...] = (
    "scaling", "excess_loss", "competence", "competence_fits", "emergence", "product_rule", "ag_failure",
    "ag_tail_bound", "collapse", "ag_cor13", "composable_k", "seen_heldout", "paired",
    "failure_kinds", "slingshot", "shots",
)
"""Analyses in run order (`_run_steps` wires each one's inputs: what it reads of the prepared data and what
earlier steps returned)."""
_NO_COMPETENCE = "needs competence, which did not run"


@dataclass(frozen=True)
class Prepared:
    """The inputs every step draws from: prepared tables, clusters, bootstrap weights and settings."""

    records: pd.DataFrame
    """Records of listed checkpoints (`schema.prepare_records`)."""
    checkpoints: pd.DataFrame
    """Checkpoints with their loss (`schema.prepare_checkpoints`)."""
    clusters: pd.DataFrame
    """Bootstrap clusters (`bootstrap.assign_clusters`)."""
    weights: np.ndarray
    """Cluster bootstrap weights."""
    sums: pd.DataFrame
    """Per-cluster sums (`cluster_sums.cluster_sums`) of the records asked with the fewest shots (all of them when
    the suite has no shots axis)."""
    config: AnalysisConfig
    """Settings."""
    seed: int
    """Seed of every bootstrap."""
    n_boot: int
    """Bootstrap replicates."""
    n_unknown_checkpoint: int
    """Records dropped because their checkpoint is not listed."""


def prepare(records: pd.DataFrame, checkpoints: pd.DataFrame, seed: int, n_boot: int,
            config: AnalysisConfig) -> Prepared:
    """The steps' common inputs: records of listed checkpoints, their clusters, bootstrap weights and sums."""
    recs, ckpts = prepare_records(records), prepare_checkpoints(checkpoints)
    known = recs["checkpoint_id"].isin(set(ckpts["checkpoint_id"]))
    recs = recs[known].reset_index(drop=True)
    clusters, codes = assign_clusters(recs)
    design = cluster_design(clusters, n_boot, rng_for(seed, "items"))
    fewest = _fewest_shots(recs)
    return Prepared(records=recs, checkpoints=ckpts, clusters=clusters, weights=design.weights,
                    sums=cluster_sums(recs[fewest].reset_index(drop=True), codes[fewest]), config=config, seed=seed,
                    n_boot=n_boot, n_unknown_checkpoint=int((~known).sum()))


def _fewest_shots(recs: pd.DataFrame) -> np.ndarray:
    """Rows asked with the fewest worked examples: a suite with a shots axis asks the same queries at several shot
    counts, and a competence curve that pooled them would mix prompts; the shots analysis compares them."""
    if "n_shots" not in recs.columns or recs.empty:
        return np.ones(len(recs), dtype=bool)
    shots = pd.to_numeric(recs["n_shots"], errors="coerce").fillna(0).to_numpy()
    return shots == shots.min()


def competence_of(p: Prepared) -> tuple[pd.DataFrame, np.ndarray]:
    """The competence table and its bootstrap as `analyze` hands them on, with excess loss from the known floor
    (no scaling fit): the short way to the later steps for tests and calibration."""
    _, ex = steps.excess(p.checkpoints, np.nan, None)
    _, comp = steps.competence(p.checkpoints, p.sums, p.weights, ex)
    return comp


def _overview(p: Prepared, n_input: int) -> dict[str, Any]:
    recs = p.records
    failed = recs["value"].isna()
    return {
        "n_records": n_input, "n_records_used": len(recs), "n_failed_records": int(failed.sum()),
        "failed_by_error": recs.loc[failed, "error"].fillna("no reason given").value_counts().to_dict()
        if "error" in recs.columns else {},
        "n_records_unknown_checkpoint": p.n_unknown_checkpoint,
        "n_checkpoints": int(len(p.checkpoints)), "metrics": sorted(recs["metric"].unique()),
        "modes": sorted(recs["mode"].unique()), "ks": sorted(int(k) for k in recs["k"].unique()),
        "shot_counts": sorted(int(n) for n in pd.to_numeric(recs["n_shots"], errors="coerce").dropna().unique())
        if "n_shots" in recs.columns else [],
        "seed": p.seed, "n_boot": p.n_boot,
    }


def _run_steps(p: Prepared, tables: dict[str, pd.DataFrame], analyses: dict[str, Any]) -> None:
    """Runs every step in `STEP_NAMES` order, each with its inputs as arguments; a step whose input could not
    be computed (an earlier step failed) runs without it or is skipped with the reason."""
    def run(name: str, step: Callable[..., Any], *args: Any, feeds: bool = False) -> Any:
        return _run(name, lambda: step(*args), tables, analyses, feeds)

    cfg, seed, n_boot, ck = p.config, p.seed, p.n_boot, p.checkpoints
    E, E_boot = run("scaling", steps.scaling, ck, cfg, seed, n_boot, feeds=True) or (np.nan, None)
    ex = run("excess_loss", steps.excess, ck, E, E_boot, feeds=True)
    comp = run("competence", steps.competence, ck, p.sums, p.weights, ex, feeds=True)
    if comp is None:
        for name in ("competence_fits", "emergence"):
            _skip(name, analyses)
    else:
        run("competence_fits", steps.competence_fits, *comp, cfg)
        run("emergence", steps.emergence, *comp, p.sums, cfg)
    run("product_rule", steps.product_rule, p.sums, p.clusters, p.weights, cfg, seed)
    slopes = None
    if comp is None:
        for name in ("ag_failure", "ag_tail_bound", "collapse", "ag_cor13", "composable_k"):
            _skip(name, analyses)
    else:
        run("ag_failure", steps.ag_failure, *comp, cfg, seed, n_boot)
        run("ag_tail_bound", steps.ag_tail_bound, comp[0], p.sums, p.clusters, cfg)
        slopes = run("collapse", steps.collapse, *comp, cfg, feeds=True)
        run("ag_cor13", steps.ag_cor13, *comp, p.sums, cfg)
        run("composable_k", steps.composable, comp[0], cfg, seed, n_boot, slopes)
    run("seen_heldout", steps.seen_heldout, p.sums, p.weights, p.clusters, cfg)
    run("paired", steps.paired, p.records, ck, cfg, seed, n_boot)
    format_share = run("failure_kinds", beyond_steps.failure_kinds, p.records, cfg, feeds=True)
    by_shots = run("slingshot", beyond_steps.slingshot, p.records, p.clusters, p.weights, ex, cfg, format_share,
                   feeds=True)
    if by_shots is None:
        _skip("shots", analyses, "needs the per-shot sums, which the slingshot step failed to compute")
    else:
        run("shots", beyond_steps.shots, by_shots, p.weights, ck, cfg)


def _skip(name: str, analyses: dict[str, Any], reason: str = _NO_COMPETENCE) -> None:
    """Records a step that cannot run because an input it needs (by default competence) was not computed."""
    analyses[name] = summary_entry({"status": "skipped", "reason": reason}, reason)


def _run(name: str, call: Callable[[], Any], tables: dict[str, pd.DataFrame], analyses: dict[str, Any],
         feeds: bool = False) -> Any:
    """Runs one step and records its tables and summary entry; returns what it hands to later steps (`feeds`),
    None when it failed."""
    try:
        result = call()
    except Exception as exc:  # one analysis failing must not stop the others; its reason is kept
        analyses[name] = {"status": "error", "reason": f"unexpected {type(exc).__name__}: {exc}"}
        return None
    (produced, highlights), value = result if feeds else (result, None)
    tables.update(produced)
    reason = highlights.pop("reason", None)
    analyses[name] = summary_entry({"status": "ok" if reason is None else "skipped", "reason": reason, **highlights},
                                   reason)
    return value


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
        prepared = prepare(records, checkpoints, seed, n_boot, config)
        summary: dict[str, Any] = jsonable(_overview(prepared, len(records)))
        analyses: dict[str, Any] = {}
        tables: dict[str, pd.DataFrame] = {}
        if prepared.records.empty:
            analyses["all"] = {"status": "skipped", "reason": "no records belong to a listed checkpoint"}
        else:
            _run_steps(prepared, tables, analyses)
    summary["analyses"] = analyses
    frames = {name: tables.get(name, pd.DataFrame()).reindex(columns=list(TABLE_COLUMNS[name])).reset_index(drop=True)
              for name in TABLES}
    return AnalysisResult(**frames, summary=summary)

