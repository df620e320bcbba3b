"""Report sections of the fitted laws: scaling, excess loss, competence, single skills, product rule, Arora-Goyal, collapse.

Each function takes the `ReportData` and the rendered figures (name -> PNG bytes) and returns one
`<section>` with a stable id, its figure and a compact table; the full tidy table sits in a
collapsed block under it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.collapse import POOLED_FIT_CAVEAT
from harness.analysis.result import why_missing
from harness.records import SINGLE_MODE
from harness.report.data import ReportData
from harness.report.elements import Cell, details, esc, figure, frame_table, ival, section, status_line, table
from harness.report.fmt import is_missing, num, pct

Figures = dict[str, bytes]


def reason_of(value: Any) -> str | None:
    """A reason cell as text, None when missing."""
    return None if is_missing(value) else str(value)


def full(data: ReportData, name: str) -> str:
    """The collapsed full tidy table `name`."""
    frame = data.table(name)
    return details(f"Full table: analysis/{name}.parquet ({len(frame)} rows)", frame_table(frame, data.labels()))


def cell_key(mode: Any, k: Any) -> str:
    """Column heading of a (mode, k) cell."""
    return f"{mode} k={int(k)}"


def cells_of(frame: pd.DataFrame) -> list[tuple[str, int]]:
    """Sorted (mode, k) pairs of a table, single first."""
    pairs = {(str(m), int(k)) for m, k in zip(frame["mode"], frame["k"]) if not is_missing(k)}
    return sorted(pairs, key=lambda p: (p[0] != SINGLE_MODE, p[0], p[1]))


def best_checkpoint(data: ReportData, ids: Any) -> str | None:
    """The lowest-loss checkpoint among `ids` (None when none of them has a loss)."""
    present = {str(i) for i in ids}
    ck = data.checkpoints
    ok = ck[ck["checkpoint_id"].isin(present) & ck["loss"].notna()]
    return str(ok["checkpoint_id"].iloc[-1]) if len(ok) else None


def scaling_section(data: ReportData, figs: Figures) -> str:
    """Scaling-law fits."""
    entry = data.analysis("scaling")
    rows, reasons = [], []
    for fit in entry.get("fits") or []:
        why = why_missing(fit)
        nd = fit.get("form") == "ND"
        rows.append([fit.get("form"), fit.get("variant"), fit.get("n_checkpoints"),
                     ival(fit, "E", why.get("E"), why.get("E_lo")), Cell(fit.get("A"), why.get("A")),
                     ival(fit, "alpha", why.get("alpha"), why.get("alpha_lo")),
                     Cell(fit.get("B"), why.get("B")) if nd else "n/a", Cell(fit.get("beta"), why.get("beta")) if nd
                     else "n/a", fit.get("known_floor"), fit.get("at_bound") or ("none" if fit.get("E") else None)])
        reasons.append(fit.get("reason"))
    intro = ("Per-token loss L of held-out text (nats/token) against parameters N "
             f"(<code>{esc(entry.get('N_column', 'params'))}</code>): L(N) = E + A·N<sup>−α</sup>, and "
             "L(N, D) = E + A·N<sup>−α</sup> + B·D<sup>−β</sup> when token counts vary (Hoffmann et al. 2022), "
             "each with E free and, when the entropy floor is known, fixed to it. Intervals: checkpoint bootstrap, "
             "<b>descriptive, not calibrated</b>: the losses of one trained family have no sampling model to "
             "calibrate them against (README, “How far to trust the verdicts”).")
    tab = table(["form", "variant", "checkpoints", "E [95% CI]", "A", "α [95% CI]", "B", "β", "known floor",
                 "on search bound"], rows, keys=["form", "variant", "n", "E", "A", "alpha", "B", "beta", "floor",
                                                 "at_bound"], row_reasons=reasons)
    return section("scaling", "Scaling law", intro, status_line(entry),
                   figure("scaling", figs.get("scaling"), "Loss vs parameters with the fitted scaling laws"),
                   tab, full(data, "scaling"))


def excess_section(data: ReportData, figs: Figures) -> str:
    """Excess loss per checkpoint."""
    entry = data.analysis("excess_loss")
    rows, reasons = [], []
    for r in data.checkpoints.to_dict("records"):
        why, err = reason_of(r.get("excess_reason")), reason_of(r.get("error"))
        rows.append([r["label"], Cell(r.get("loss"), err or "no held-out tokens scored"), r.get("E"),
                     ival(dict(r, excess=r.get("excess_loss")), "excess", why)])
        reasons.append(why or err)
    intro = (f"δ = L − E, with E from the <b>{esc(entry.get('source', 'unknown'))}</b>. A checkpoint at or "
             "below E has no excess loss (shown as —). Interval: from E's bootstrap interval.")
    tab = table(["checkpoint", "loss (nats/token)", "E", "δ [95% CI]"], rows,
                keys=["checkpoint", "loss", "E", "excess"], row_reasons=reasons)
    return section("excess_loss", "Excess loss", intro, status_line(entry),
                   figure("excess_loss", figs.get("excess_loss"), "Excess loss per checkpoint"), tab,
                   full(data, "excess_loss"))


def competence_section(data: ReportData, figs: Figures) -> str:
    """Competence per checkpoint and cell, plus the curve fits."""
    comp = data.table("competence")
    comp = comp[comp["metric"] == data.metric]
    cells = cells_of(comp)
    lookup = {(str(r["checkpoint_id"]), str(r["mode"]), int(r["k"])): r for r in comp.to_dict("records")}
    rows = []
    for ck in data.checkpoints.to_dict("records"):
        values = []
        for m, k in cells:
            r = lookup.get((ck["checkpoint_id"], m, k))
            why = "not administered" if r is None else reason_of(r.get("reason")) or "not estimable (no scored item)"
            values.append(Cell(None if r is None else r.get("competence"), why))
        rows.append([ck["label"], Cell(ck.get("loss"), reason_of(ck.get("error"))),
                     Cell(ck.get("excess_loss"), reason_of(ck.get("excess_reason"))), *values])
    headers = ["checkpoint", "loss", "δ", *[cell_key(m, k) for m, k in cells]]
    intro = (f"Chance-corrected competence (p − g)/(1 − g) of <code>{esc(data.metric)}</code> per checkpoint "
             "(rows from highest to lowest loss) and (mode, k). Figure: points with item-cluster bootstrap "
             "intervals, the best-AIC fitted curve (solid), the product-rule prediction (dotted) and the "
             "Arora–Goyal k-tuple bound 1 − min(1, k·f₁) (dashed).")
    return section("competence", "Competence vs loss", intro, status_line(data.analysis("competence_fits")),
                   figure("competence", figs.get("competence"), "Competence vs excess loss per k"),
                   table(headers, rows, keys=["checkpoint", "loss", "excess", *headers[3:]]), _fits_table(data),
                   full(data, "competence"), full(data, "competence_fits"), full(data, "competence_forecast"))


def _fits_table(data: ReportData) -> str:
    fits, fc = data.table("competence_fits"), data.table("competence_forecast")
    fits = fits[fits["metric"] == data.metric]
    rows, reasons = [], []
    for (mode, k), group in fits.groupby(["mode", "k"], sort=True):
        daic = pd.to_numeric(group["delta_aic"], errors="coerce")
        best = group.loc[daic == 0, "form"]
        form = str(best.iloc[0]) if len(best) else None
        others = ", ".join(f"{f} +{num(d)}" for f, d in zip(group["form"], daic) if f != form and np.isfinite(d))
        hits = fc[(fc["mode"] == mode) & (fc["k"] == k) & (fc["metric"] == data.metric) & (fc["form"] == form)]
        inside = hits["inside"].dropna()
        rows.append([str(mode), int(k), form, others or None, group["n_checkpoints"].max(),
                     f"{int(inside.astype(bool).sum())}/{len(inside)}" if len(inside) else None])
        fit_reasons = group["reason"].dropna()
        reasons.append(None if form else str(fit_reasons.iloc[0]) if len(fit_reasons) else "not fitted")
    coverage = data.analysis("competence_fits").get("forecast_coverage_by_form") or {}
    per_form = ", ".join(f"{esc(f)} {esc(num(c))}" for f, c in coverage.items()) or "not available"
    caption = (f'<p class="caption">Curve forms compared by AIC; forecast: each form fitted without the lowest-loss '
               "checkpoints predicts them with a 95% prediction interval (cluster bootstrap: parameter uncertainty "
               "and the held-out cell's own noise); the table counts held-out points inside the best form's interval. "
               f"Share inside, per form: {per_form}.</p>")
    return caption + table(["mode", "k", "best form", "ΔAIC of the others", "checkpoints", "forecast inside"], rows,
                           keys=["mode", "k", "best", "others", "n", "forecast"], row_reasons=reasons)


def skills_section(data: ReportData, figs: Figures) -> str:
    """Per-skill heat map."""
    intro = (f"Mean k = 1 <code>{esc(data.metric)}</code> per skill and checkpoint; a grey cell means every item of "
             "that skill failed to score (NaN), which is different from accuracy 0.")
    return section("skills", "Single skills", intro,
                   figure("skills", figs.get("skills"), "Single-skill accuracy by checkpoint"),
                   figure("skill_loss", figs.get("skill_loss"),
                          "Left: each skill's cross-entropy on the gold answers of its k = 1 items against the "
                          "checkpoint's loss (A&G: competence on every skill follows the overall loss). Right: the "
                          "skill's accuracy against its own loss: where each skill switches on. Table: "
                          "analysis/per_skill_loss.parquet."))


def product_section(data: ReportData, figs: Figures) -> str:
    """Product rule per (mode, k)."""
    entry, table_ = data.analysis("product_rule"), data.table("product_rule")
    rows, reasons = [], []
    for (mode, k), group in table_.groupby(["mode", "k"], sort=True):
        best = best_checkpoint(data, group["checkpoint_id"])
        r = group[group["checkpoint_id"].astype(str) == best].iloc[0].to_dict() if best else {}
        ratios = pd.to_numeric(group["ratio"], errors="coerce")
        rows.append([str(mode), int(k), int(ratios.notna().sum()), Cell(ratios.median(), "no finite ratio"),
                     data.label(best), ival(r, "observed"), ival(r, "predicted"), ival(r, "ratio", r.get("reason")),
                     ival(r, "gap", r.get("reason"))])
        reasons.append(r.get("reason"))
    intro = ("Predicted composite competence = mean over items of ∏ of the single-skill competences of the item's "
             "skills on the same checkpoint; ratio = observed / predicted (1 = skills combine independently, &lt; 1 "
             "= composition costs extra). Gap: fraction of composite items answered wrong although every skill is "
             "right alone; its interval holds fixed which skills count as right (chosen from the same data), so it "
             "is <b>descriptive, not calibrated</b>. Median ratio over the {esc(entry.get('n_ratio_cells', 'all'))} cells with an informative "
             f"prediction: <b>{esc(num(entry.get('median_ratio')))}</b> (a cell whose predicted competence is below "
             "0.05, or below 5 expected successes, has no ratio: observed ≈ 0 is then no evidence either way).")
    tab = table(["mode", "k", "checkpoints with a ratio", "median ratio", "lowest-loss checkpoint", "observed",
                 "predicted", "ratio", "gap"], rows,
                keys=["mode", "k", "n", "median_ratio", "checkpoint", "observed", "predicted", "ratio", "gap"],
                row_reasons=reasons)
    return section("product_rule", "Product rule", intro, status_line(entry),
                   figure("product_rule", figs.get("product_rule"), "Observed vs predicted competence"), tab,
                   full(data, "product_rule"))


def ag_section(data: ReportData, figs: Figures) -> str:
    """Arora-Goyal failure law, k-tuple rule and tail bound."""
    fit = data.analysis("ag_failure")
    why = why_missing(fit)
    law = table(["c", "b [95% CI]", "linear law (b = 1)", "reference checkpoint", "c at reference", "checkpoints"],
                [[Cell(fit.get("c"), why.get("c")), ival(fit, "b", why.get("b"), why.get("b_lo")),
                  fit.get("linear_law") or fit.get("b_is_1_plausible"), data.label(fit.get("reference_checkpoint")) if fit.get(
                      "reference_checkpoint") else None, fit.get("c_reference"), fit.get("n_checkpoints")]],
                keys=["c", "b", "b_is_1", "reference", "c_reference", "n"], row_reasons=[fit.get("reason")])
    bound = data.table("ag_tail_bound")
    best = best_checkpoint(data, bound["checkpoint_id"])
    bound = bound[bound["checkpoint_id"].astype(str) == best].sort_values(["mode", "k"])
    rows = [[data.label(r["checkpoint_id"]), r["mode"], r["k"], r["theta"], Cell(r["beta_star"], "bound vacuous"),
             r["bound"], r["n_skills"], r["frac_inside"], r["holds"], r["frac_inside_single"]]
            for r in bound.to_dict("records")]
    tail = table(["checkpoint", "mode", "k", "θ (composite failure)", "β*", "bound β*·θ", "skills", "fraction inside",
                  "holds (≥ 1 − α)", "fraction inside (k = 1 items)"], rows,
                 keys=["checkpoint", "mode", "k", "theta", "beta_star", "bound", "n_skills", "frac_inside", "holds",
                       "frac_inside_single"], row_reasons=list(bound["reason"]))
    cor = data.table("ag_cor13_summary")
    cor_rows = [[r["mode"], r["k"], ival(r, "mean_diff", r.get("reason")), r["n_checkpoints"], r["consistent"]]
                for r in cor.to_dict("records")]
    cor13 = table(["mode", "k", "mean q_k(δ) − q_1(k·δ) [95% CI]", "checkpoints", "consistent with Cor. 13"],
                  cor_rows, keys=["mode", "k", "diff", "n", "consistent"], row_reasons=list(cor["reason"]))
    intro = ("(a) Single-skill failure f = min(1, c·δ<sup>b</sup>) (A&amp;G's linear law is b = 1); (b) k-tuple "
             "rule: composite failure ≤ min(1, k·f₁) — it holds in "
             f"<b>{esc(pct(fit.get('fraction_within_union')))}</b> of the composite cells; (c) tail bound: at least "
             "1 − α of the skills fail at most β*·θ of their composite items — it holds in "
             f"<b>{esc(pct(data.analysis('ag_tail_bound').get('fraction_holds')))}</b> of the "
             f"{tested_cells(data.analysis('ag_tail_bound'))} (all checkpoints; a comparison of point estimates "
             "with no test level: <b>descriptive, not calibrated</b>).")
    return section("arora_goyal", "Arora–Goyal predictions", intro, status_line(fit),
                   figure("arora_goyal", figs.get("arora_goyal"), "Failure law and k-tuple rule"), law,
                   f"<h3>Tail bound on the lowest-loss checkpoint ({esc(data.label(best) if best else '—')})</h3>",
                   tail, "<h3>Cor. 13: k-tuple competence at δ against single-skill competence at k·δ</h3><p class=\"caption\">Intervals are expanded for few clusters (the single-skill side rests on one bootstrap cluster per skill; calibrated coverage 0.94 of 0.95 at k = 2 and 3).</p>", cor13,
                   full(data, "ag_tail_bound"), full(data, "ag_failure"), full(data, "ag_ktuple"),
                   full(data, "ag_cor13"))


def tested_cells(entry: dict) -> str:
    """"12 cells with a non-vacuous bound (288 vacuous)", or "cells" for an older summary."""
    tested, vacuous = entry.get("n_cells_tested"), entry.get("n_cells_vacuous")
    if tested is None:
        return "cells"
    return f"{tested} cells with a non-vacuous bound ({vacuous} vacuous)"


def collapse_section(data: ReportData, figs: Figures) -> str:
    """Collapse test per composite mode."""
    entry, tab_ = data.analysis("collapse"), data.table("collapse")
    rows, reasons = [], []
    tests = {t.get("mode"): t for t in entry.get("tests") or []}
    for r in tab_.to_dict("records"):
        why = why_missing(tests.get(r["mode"]))
        rows.append([r["mode"], r["n_cells"], ival(r, "a", why.get("a"), why.get("a_lo")),
                     ival(r, "b", why.get("b"), why.get("b_lo")), ival(r, "a_minus_b", why.get("a")),
                     Cell(r["p_a_eq_b"], why.get("p_a_eq_b")), Cell(r["p_a_eq_1"], why.get("p_a_eq_1")),
                     r["verdict"], Cell(r.get("p_shared_curve"), None),
                     ival(r, "c_shared", r.get("c_shared_reason"), r.get("c_shared_reason"))])
        reasons.append(r.get("reason"))
    trained = entry.get("trained_ks")
    ood = "; ".join(f"{o['mode']} k={o['k']}: max {num(o['max_competence'])}" for o in entry.get("out_of_distribution") or [])
    intro = ("Fit of q = exp(−λ·k<sup>a</sup>·δ<sup>b</sup>) to chance-corrected competence. Arora–Goyal predict "
             "a = b (curves for different k collapse on k·δ); independent skills predict a = 1 (q<sub>k</sub> = "
             "q<sub>1</sub><sup>k</sup>), or a &lt; 1 when items differ in difficulty, so independence is tested "
             "one-sided (H0: a ≤ 1). p-values come from the cluster bootstrap over skill tuples (the same items "
             "are scored at every checkpoint, so cells are not independent); the shared-curve p tests one monotone "
             "F(k·δ) for every k against separate curves, without a functional form (it rejected independence data "
             "in 63% of simulated runs, so not rejecting a shared curve is weak evidence for collapse). "
             "c is the k-scaling under which one monotone curve fits every k, q<sub>k</sub>(δ) = F(k<sup>c</sup>·δ), "
             "without a functional form: Arora–Goyal predict c = 1, independent skills c = 1/b; its interval "
             "refits c to every bootstrap replicate. "
             f"{esc(POOLED_FIT_CAVEAT[0].upper() + POOLED_FIT_CAVEAT[1:])}. "
             f"Fitted on trained k only ({esc(', '.join(map(str, trained)) if trained else 'every k')})"
             + (f"; out of distribution, reported apart: {esc(ood)}." if ood else "."))
    tab = table(["mode", "cells", "a [95% CI]", "b [95% CI]", "a − b [95% CI], pooled fit", "p (a = b), pooled fit",
                 "p (a ≤ 1)", "verdict", "p shared curve", "c, shared curve [95% CI]"], rows,
                keys=["mode", "n_cells", "a", "b", "a_minus_b", "p_a_eq_b", "p_a_eq_1", "verdict", "p_shared",
                      "c_shared"],
                row_reasons=reasons)
    return section("collapse", "Collapse test", intro, status_line(entry),
                   figure("collapse", figs.get("collapse"), "Competence against k·δ"), tab, full(data, "collapse"))
