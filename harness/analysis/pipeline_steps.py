"""The analyses `analyze` runs, one function each: inputs as arguments, (tables, summary highlights) out.

Each step takes exactly what it reads: prepared tables, cluster sums, bootstrap weights, the config, and
what earlier steps return for later ones (`scaling` the fitted E, `excess` its table, `competence` its
table and bootstrap, `collapse` its slopes); `analyze` wires them. A highlight named "reason" marks the
step as skipped; `result.MISSING` in the highlights or in one of their records says, by field name, why a
value there may be missing (`result.summary_entry`).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from harness.analysis import ag_bound, ag_failure as agf, collapse as col, composable as comp, cor13, emergence as em
from harness.analysis.bootstrap import rng_for
from harness.analysis.collapse_exponent import COLLAPSE_EXPONENT_KEYS, collapse_exponent
from harness.analysis.competence import competence_table, fit_competence_curves
from harness.analysis.excess import (SCALING_COLUMNS, excess_loss_table, excess_source, fit_scaling, known_floor,
                                     nd_possible)
from harness.analysis.generalization import seen_heldout_table
from harness.analysis.paired import PAIRED_COLUMNS, paired_comparison
from harness.analysis.product_rule import MIN_EXPECTED, MIN_PREDICTED, product_rule_table, single_skill_rates
from harness.analysis.result import MISSING, AnalysisConfig, summary_records
from harness.analysis.slingshot import inside_seen
from harness.records import SINGLE_MODE

Output = tuple[dict[str, pd.DataFrame], dict[str, Any]]
_KEYS = ("E", "E_lo", "E_hi", "A", "alpha", "alpha_lo", "alpha_hi", "B", "beta", "known_floor", "n_checkpoints",
         "at_bound", "n_boot_valid", "reason")
_CI_REASON = "fewer than half of the bootstrap replicates could be fitted (too few distinct checkpoints)"


def _trained(table: pd.DataFrame, cfg: AnalysisConfig) -> pd.Series:
    """True for rows whose k the family was trained on (`AnalysisConfig.trained_ks`; None: every k)."""
    ks = cfg.trained_ks
    return pd.Series(True, index=table.index) if ks is None else table["k"].astype(int).isin(set(ks))


def _out_of_distribution(table: pd.DataFrame, cfg: AnalysisConfig) -> list[dict[str, Any]]:
    """Per (mode, k) beyond the trained k: the largest competence over checkpoints, reported apart from the tests."""
    ood = table[~_trained(table, cfg) & (table["metric"] == cfg.metric)]
    if ood.empty:
        return []
    top = ood.groupby(["mode", "k"], sort=True)["competence"].max().reset_index()
    return [{"mode": r["mode"], "k": int(r["k"]), "max_competence": r["competence"]} for r in top.to_dict("records")]


def _empty_reason(table: pd.DataFrame, column: str, when_empty: str) -> str | None:
    """None when some row of `table` has a finite `column`; otherwise the rows' most common reason."""
    if len(table) and pd.to_numeric(table[column], errors="coerce").notna().any():
        return None
    reasons = table["reason"].dropna() if "reason" in table.columns else pd.Series(dtype=object)
    return str(reasons.mode().iloc[0]) if len(reasons) else when_empty


_NO_E = "none: no usable free-E fit (each failed, had a parameter on a search bound or an E not below the lowest loss)"


def _choose_E(table: pd.DataFrame, boots: dict, min_loss: float) -> tuple[float, np.ndarray | None, str]:
    """E for the excess loss when the floor is unknown: the free-E fit of L(N, D) if usable, else of L(N).

    Usable means fitted, no parameter on its search bound (`fit_scaling` then already reports E as
    NaN) and 0 < E < the lowest observed loss.
    """
    for form in ("ND", "N"):
        row = table[(table["form"] == form) & (table["variant"] == "free_E")]
        if row.empty or pd.notna(row["reason"].iloc[0]) or pd.notna(row["at_bound"].iloc[0]):
            continue
        E = float(row["E"].iloc[0])
        if np.isfinite(E) and 0.0 < E < min_loss:
            return E, boots[(form, "free_E")][:, 0], f"free_E fit of the {form} law"
    return np.nan, None, _NO_E


def scaling(ck: pd.DataFrame, cfg: AnalysisConfig, seed: int, n_boot: int) -> tuple[Output, tuple[float, Any]]:
    """L(N) on final checkpoints (and L(N, D) when tokens vary), each with free E and, if known, fixed E.

    Returns:
        The step's output, and the E the excess loss may use (NaN when no fit is usable) with its bootstrap.
    """
    n_col = cfg.n_column if pd.to_numeric(ck.get(cfg.n_column), errors="coerce").gt(0).all() else "params"
    floor = known_floor(ck)
    rows, boots = [], {}
    for form in ["N"] + (["ND"] if nd_possible(ck, n_col) else []):
        for fixed in [None] + ([floor] if np.isfinite(floor) else []):
            row, boot = fit_scaling(ck, n_column=n_col, fixed_E=fixed, n_boot=n_boot, form=form,
                                    rng=rng_for(seed, f"scaling-{form}-{fixed is None}"))
            row.update(known_floor=floor, E_minus_floor=row.get("E", np.nan) - floor)
            rows.append(row)
            boots[(form, row["variant"])] = boot
    table = pd.DataFrame(rows).reindex(columns=list(SCALING_COLUMNS))
    E_fit, E_boot, fitted = _choose_E(table, boots, float(ck["loss"].min()))
    # the excess step takes the known floor whenever every checkpoint reports one; say which it will use
    source = ("known entropy floor (exact; no fitted E is used)"
              if excess_source(ck, E_fit) == "known floor" else fitted)
    fits = [{k: r.get(k) for k in ("form", "variant", *_KEYS) if r.get("form") == "ND" or k not in ("B", "beta")}
            for r in summary_records(table, SCALING_COLUMNS)]
    fits = [{**fit, MISSING: _fit_why(fit, n_boot)} for fit in fits]
    reason = _empty_reason(table, "E", "no checkpoint with a positive loss")
    return ({"scaling": table}, {"N_column": n_col, "E_for_excess": source, "fits": fits,
                                 "reason": reason}), (E_fit, E_boot)


def _fit_why(fit: dict[str, Any], n_boot: int) -> dict[str, str]:
    """Why values of one scaling fit are missing: its own reason for E (not identified), the bootstrap for CIs."""
    why = {}
    valid = fit.get("n_boot_valid")
    if valid is not None and valid < n_boot / 2:  # `percentile_ci` needs half of the replicates
        why.update({f"{p}_{end}": _CI_REASON for p in ("E", "alpha") for end in ("lo", "hi")})
    if fit.get("reason"):
        why.update({p: fit["reason"] for p in ("E", "E_lo", "E_hi")})
    return why


def excess(ck: pd.DataFrame, E: float, E_boot: np.ndarray | None) -> tuple[Output, pd.DataFrame]:
    """Excess loss from the known floor, else from the fitted E (NaN when `scaling` gave none); returns its table."""
    source = excess_source(ck, E)
    table = excess_loss_table(ck, E, E_boot, source)
    reason = None if table["excess_loss"].notna().any() else "no checkpoint has a positive excess loss"
    return ({"excess_loss": table}, {"source": source, "E": E if source == "fitted E" else None,
                                     "n_positive": int(table["excess_loss"].notna().sum()), "reason": reason}), table


def competence(ck: pd.DataFrame, sums: pd.DataFrame, weights: np.ndarray,
               ex: pd.DataFrame | None) -> tuple[Output, tuple[pd.DataFrame, np.ndarray]]:
    """Competence table with cluster-bootstrap intervals; returns the table and its bootstrap for later steps.

    `ex` is the excess-loss table (None when `excess` did not run: then excess loss is unavailable).
    """
    if ex is None:
        ex = excess_loss_table(ck, np.nan, None, "unavailable")
    table, boot = competence_table(sums, weights, ex)
    return ({"competence": table}, {"n_cells": len(table), "n_cells_all_failed": int((table["n"] == 0).sum())}), (
        table, boot)


def competence_fits(table: pd.DataFrame, boot: np.ndarray, cfg: AnalysisConfig) -> Output:
    """Three curve forms per cell, AIC and the forecasting test."""
    out = fit_competence_curves(table, n_holdout=cfg.n_holdout, boot=boot,
                                n_pi=cfg.n_forecast_boot, pi_metric=cfg.metric)
    fits = out["competence_fits"]
    best = fits.loc[fits["delta_aic"] == 0, "form"].value_counts().to_dict()
    fc = out["competence_forecast"]
    fc = fc[fc["metric"] == cfg.metric]
    coverage = {form: float(g["inside"].dropna().astype(bool).mean())
                for form, g in fc.groupby("form", sort=True) if g["inside"].notna().any()}
    reason = _empty_reason(fits, "nll", "no rate metric scored")
    return out, {"best_form_counts": best, "forecast_coverage_by_form": coverage, "reason": reason}


def emergence(table: pd.DataFrame, boot: np.ndarray, sums: pd.DataFrame, cfg: AnalysisConfig) -> Output:
    """Above-chance tests, sharpness, breakpoints (intervals expanded for each cell's clusters in `sums`) and the
    mirage check."""
    above = em.above_chance_table(table, level=cfg.test_level)
    emerg = em.emergence_table(table, boot, above, em.clusters_per_cell(sums))
    mirage = em.mirage_table(table, boot, emerg, level=cfg.test_level)
    main = emerg[emerg["metric"] == cfg.metric]
    no_tests = _empty_reason(above, "p_value", "no binary metric scored")
    reason = no_tests if no_tests and _empty_reason(emerg, "breakpoint_loss", "no rate metric scored") else None
    return ({"above_chance": above, "emergence": emerg, "mirage": mirage},
            {"emergence": summary_records(main, ("mode", "k", "n_above_chance", "sharpness", "breakpoint_loss",
                                                 "breakpoint_lo", "breakpoint_hi", "breakpoint_in_range")),
             "mirage": summary_records(mirage, ("mode", "k", "reference", "p_breakpoint", "eta_breakpoint", "verdict")),
             "reason": reason})


def product_rule(sums: pd.DataFrame, clusters: pd.DataFrame, weights: np.ndarray, cfg: AnalysisConfig,
                 seed: int) -> Output:
    """Product-rule ratio and compositionality gap; the median ratio is over cells with an informative prediction."""
    table = product_rule_table(sums, clusters, weights, rng_for(seed, "product"), metric=cfg.metric,
                               threshold=cfg.gap_threshold)
    reason = _empty_reason(table, "observed", f"needs k = 1 and k > 1 items scored with {cfg.metric}")
    trained = _trained(table, cfg) if len(table) else pd.Series(dtype=bool)
    ood = pd.to_numeric(table.loc[~trained, "ratio"], errors="coerce") if len(table) else pd.Series(dtype=float)
    table_all, table = table, table[trained] if len(table) else table
    ratio = pd.to_numeric(table["ratio"], errors="coerce")
    why = {"median_ratio": f"no cell has predicted competence >= {MIN_PREDICTED} and >= {MIN_EXPECTED:g} expected "
                           "successes: every ratio is uninformative"}
    return {"product_rule": table_all}, {"median_ratio": ratio.median() if ratio.notna().any() else np.nan,
                                     "median_ratio_out_of_distribution": ood.median() if ood.notna().any() else None,
                                     "n_ratio_cells": int(ratio.notna().sum()),
                                     "n_uninformative_cells": int(ratio.isna().sum()),
                                     "mean_gap": table["gap"].mean() if len(table) else np.nan, "reason": reason,
                                     MISSING: why}


def ag_failure(table: pd.DataFrame, boot: np.ndarray, cfg: AnalysisConfig, seed: int, n_boot: int) -> Output:
    """(a) failure vs excess loss and (b) the k-tuple rule."""
    singles = table[(table["k"] == 1) & (table["mode"] == SINGLE_MODE) & (table["metric"] == cfg.metric)]
    fail, fit = agf.failure_law(singles, n_boot=n_boot, rng=rng_for(seed, "failure"),
                                reference=cfg.reference_checkpoint, boot=boot)
    ktuple = agf.ktuple_table(table[_trained(table, cfg)], fail, cfg.metric)  # k beyond training: reported apart
    within = ktuple["within_union"].dropna()
    fit_row = pd.DataFrame([fit]).reindex(columns=list(agf.FAILURE_FIT_COLUMNS))
    why = {"b_lo": _CI_REASON, "b_hi": _CI_REASON, "fraction_within_union": "no composite (k > 1) cell to compare"}
    return ({"ag_failure": fail, "ag_failure_fit": fit_row, "ag_ktuple": ktuple},
            {**fit, "fraction_within_union": float(within.astype(bool).mean()) if len(within) else np.nan,
             MISSING: why})


def ag_tail_bound(competence: pd.DataFrame, sums: pd.DataFrame, clusters: pd.DataFrame,
                  cfg: AnalysisConfig) -> Output:
    """(c) the single-skill tail bound."""
    edges = ag_bound.edge_failure_rates(sums, clusters, cfg.metric)
    singles = single_skill_rates(sums, clusters, cfg.metric)
    table = ag_bound.tail_bound_table(competence, edges, singles, metric=cfg.metric, alpha=cfg.tail_alpha)
    holds = table["holds"].dropna()
    vacuous = table["reason"].fillna("").str.contains("vacuous")
    reason = _empty_reason(table, "frac_inside", "no composite (k > 1) items")
    if reason and vacuous.any() and vacuous.sum() == pd.to_numeric(table["theta"], errors="coerce").notna().sum():
        reason = "the bound is vacuous in every cell (failure rate 1, or beta* theta >= 1): nothing to test"
    why = {"fraction_holds": "no cell with a non-vacuous bound and composite items with scored skills"}
    return {"ag_tail_bound": table}, {"fraction_holds": float(holds.astype(bool).mean()) if len(holds) else np.nan,
                                      "n_cells_tested": int(len(holds)), "n_cells_vacuous": int(vacuous.sum()),
                                      "reason": reason, MISSING: why}


def collapse(table: pd.DataFrame, boot: np.ndarray, cfg: AnalysisConfig) -> tuple[Output, dict[str, float]]:
    """(d) the collapse test per composite mode; returns also each mode's collapse slope -b/a for `composable`."""
    main = table[(table["metric"] == cfg.metric) & _trained(table, cfg)]
    rows = []
    for mode in sorted(set(main.loc[main["k"] > 1, "mode"])):
        cells = main[(main["mode"] == mode) | ((main["mode"] == SINGLE_MODE) & (main["k"] == 1))]
        shared = cor13.shared_curve_test(cells, boot)
        test = col.collapse_test(cells, boot, level=cfg.test_level, p_shared=shared["p_shared_curve"])
        rows.append({"mode": mode, "metric": cfg.metric, **test, **shared, **collapse_exponent(cells, boot)})
    out = pd.DataFrame(rows).reindex(columns=list(col.COLLAPSE_COLUMNS))
    slopes = {r["mode"]: -r["b"] / r["a"] for r in rows if np.isfinite(r.get("a", np.nan)) and r["a"] != 0}
    reason = _empty_reason(out, "a", "no composite (k > 1) items")
    keys = ("mode", "a", "a_lo", "a_hi", "b", "b_lo", "b_hi", "a_minus_b", "a_minus_b_lo", "a_minus_b_hi", "p_a_eq_b",
            "p_a_eq_1", "verdict", "p_shared_curve", "reason", *COLLAPSE_EXPONENT_KEYS)
    return ({"collapse": out}, {"tests": summary_records(out, keys), "trained_ks": cfg.trained_ks,
                                "test": "cluster bootstrap over skill tuples (percentile interval inverted; "
                                        "independence one-sided, H0: a <= 1)",
                                "out_of_distribution": _out_of_distribution(table, cfg), "reason": reason}), slopes


def ag_cor13(table: pd.DataFrame, boot: np.ndarray, sums: pd.DataFrame, cfg: AnalysisConfig) -> Output:
    """Cor. 13: k'-tuple competence against single-skill competence at k' delta (trained k only)."""
    singles = sums.loc[(sums["k"] == 1) & (sums["metric"] == cfg.metric), "cluster"].nunique()
    rows, summary = cor13.ktuple_rule(table[_trained(table, cfg)], boot, metric=cfg.metric,
                                      level=cfg.test_level, n_single_clusters=int(singles))
    reason = _empty_reason(summary, "mean_diff", "needs k = 1 and composite cells over 2+ checkpoints with excess loss")
    return {"ag_cor13": rows, "ag_cor13_summary": summary}, {
        "rule": summary_records(summary, cor13.COR13_SUMMARY_COLUMNS), "reason": reason}


def composable(competence: pd.DataFrame, cfg: AnalysisConfig, seed: int, n_boot: int,
               collapse_slopes: dict[str, float] | None) -> Output:
    """Largest composable k per checkpoint and its scaling with excess loss (`collapse_slopes`: None when
    `collapse` did not run)."""
    table = comp.composable_table(competence[_trained(competence, cfg)], metric=cfg.metric, level=cfg.level)
    scale = comp.composable_scaling(table, n_boot=n_boot, rng=rng_for(seed, "composable"),
                                    collapse_slopes=collapse_slopes)
    no_fit = _empty_reason(table, "k_star_fit", "no composite (k > 1) cell with scored items")
    reason = no_fit if no_fit and _empty_reason(table, "k_star", no_fit) else None
    return {"composable_k": table, "composable_scaling": scale}, {
        "scaling": summary_records(scale, ("mode", "n_points", "slope", "slope_lo", "slope_hi", "slope_collapse",
                                           "reason")),
        "reason": reason}


def seen_heldout(sums: pd.DataFrame, weights: np.ndarray, clusters: pd.DataFrame, cfg: AnalysisConfig) -> Output:
    """Seen minus held-out competence, over all k and at the largest trained k.

    A family split per k (v1) still shows held-out pairs and triples inside seen larger training pieces, so
    only tuples of the largest trained k were truly never together in training; a downward-closed split (v2)
    has none. Which case a run is in is read from its own tuples (`slingshot.inside_seen`): the caveat is
    given only when some held-out tuple lies inside a seen larger trained tuple of the run.
    """
    table = seen_heldout_table(sums, weights)
    inside = inside_seen(clusters, cfg.trained_ks)
    main = table[table["metric"] == cfg.metric]
    excludes = ((main["gap_lo"] > 0) | (main["gap_hi"] < 0)).sum()
    reason = _empty_reason(table, "gap", "needs composite items of both splits")
    ks = cfg.trained_ks
    top = max(ks) if ks else (int(main["k"].max()) if len(main) else None)
    at_top = main[main["k"] == top] if top is not None else main.iloc[:0]
    top_excludes = ((at_top["gap_lo"] > 0) | (at_top["gap_hi"] < 0)).sum()
    return {"seen_heldout": table}, {"mean_gap": main["gap"].mean(), "n_cells": int(main["gap"].notna().sum()),
                                     "n_cells_ci_excludes_0": int(excludes), "largest_trained_k": top,
                                     "mean_gap_largest_k": at_top["gap"].mean() if len(at_top) else np.nan,
                                     "n_cells_largest_k": int(at_top["gap"].notna().sum()),
                                     "n_cells_ci_excludes_0_largest_k": int(top_excludes),
                                     "n_heldout_inside_seen": len(inside),
                                     "caveat": ("held-out tuples of k below the largest trained k occur inside seen "
                                                "larger training pieces: only the largest trained k compares truly "
                                                "unseen combinations") if inside else None,
                                     "reason": reason}


def paired(records: pd.DataFrame, checkpoints: pd.DataFrame, cfg: AnalysisConfig, seed: int, n_boot: int) -> Output:
    """Clustered sign-flip test (Holm across cells) and paired bootstrap between checkpoints adjacent in loss."""
    ck = checkpoints.dropna(subset=["loss"]).sort_values("loss")
    ids = list(ck["checkpoint_id"])
    frames = [paired_comparison(records, a, b, metric=cfg.metric, n_boot=n_boot, seed=seed)
              for a, b in zip(ids[:-1], ids[1:])]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(PAIRED_COLUMNS))
    level = cfg.test_level
    reason = _empty_reason(table, "diff", "needs at least 2 checkpoints with a loss")
    return {"paired": table}, {"n_comparisons": len(table),
                               "n_significant": int((table["p_adjusted"] < level).sum()) if len(table) else 0,
                               "reason": reason}
