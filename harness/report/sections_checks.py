"""Report sections of the checks and bookkeeping: composable k, emergence and mirage, seen vs held-out, paired
comparison, checkpoints and failures.

Same contract as `sections`: `ReportData` and figures in, one `<section>` with a stable id out.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.analysis.result import missing_values, why_missing
from harness.report.data import ReportData
from harness.report.elements import Cell, details, esc, figure, ival, section, status_line, table
from harness.report.fmt import is_missing, num, plural, short_id
from harness.report.sections import Figures, cells_of, cell_key, full, reason_of


def composable_section(data: ReportData, figs: Figures) -> str:
    """Largest composable k per checkpoint and its scaling."""
    entry, table_ = data.analysis("composable_k"), data.table("composable_k")
    modes = sorted(table_["mode"].astype(str).unique())
    lookup = {(str(r["checkpoint_id"]), str(r["mode"])): r for r in table_.to_dict("records")}
    rows = []
    for ck in data.checkpoints.to_dict("records"):
        row = [ck["label"], ck.get("excess_loss")]
        for mode in modes:
            r = lookup.get((ck["checkpoint_id"], mode), {})
            censored = reason_of(r.get("censored"))
            k_star = f"{'<' if censored == 'below' else '>'} {num(r.get('k_max') if censored == 'above' else 1)}" \
                if censored else r.get("k_star")
            row += [Cell(k_star, reason_of(r.get("reason")) or "not estimable"),
                    Cell(r.get("k_star_fit"), reason_of(r.get("reason")) or "not estimable")]
        rows.append(row)
    headers = ["checkpoint", "δ"] + [f"{m}: {kind}" for m in modes for kind in ("k* interpolated", "k* fitted")]
    scale_rows, reasons = [], []
    fits = {s.get("mode"): s for s in entry.get("scaling") or []}
    for r in data.table("composable_scaling").to_dict("records"):
        why = why_missing(fits.get(r["mode"]))
        scale_rows.append([r["mode"], r["n_points"], ival(r, "slope", why.get("slope"), why.get("slope_lo")),
                           r["slope_interpolated"], Cell(r["slope_collapse"], "collapse fit unavailable")])
        reasons.append(r.get("reason"))
    level = table_["level"].dropna()
    intro = (f"k* = the k at which chance-corrected competence falls to {esc(num(level.iloc[0]) if len(level) else '—')}"
             "; “&lt; 1” / “&gt; k max” mark censored estimates. The collapse model predicts the log-log slope of k* "
             "on δ to be −b/a (−1 under Arora–Goyal's a = b). The slope's interval resamples checkpoints, which share "
             "their items: <b>descriptive, not calibrated</b> (README, “How far to trust the verdicts”).")
    return section("composable_k", "Largest composable k", intro, status_line(entry),
                   figure("composable_k", figs.get("composable_k"), "Largest composable k vs excess loss"),
                   table(headers, rows, keys=headers),
                   table(["mode", "checkpoints", "slope of log k* on log δ [95% CI]", "slope (interpolated k*)",
                          "slope predicted by collapse fit"], scale_rows,
                         keys=["mode", "n", "slope", "slope_interpolated", "slope_collapse"], row_reasons=reasons),
                   full(data, "composable_k"))


def onset_label(data: ReportData, loss: object) -> str | None:
    """Label of the checkpoint whose loss is `loss` (the nearest one), or None."""
    if is_missing(loss) or data.checkpoints["loss"].notna().sum() == 0:
        return None
    gap = (data.checkpoints["loss"] - float(loss)).abs()
    return str(data.checkpoints.loc[gap.idxmin(), "label"])


def emergence_section(data: ReportData, figs: Figures) -> str:
    """Above-chance onset, sharpness, breakpoint and the mirage verdict per (mode, k)."""
    entry = data.analysis("emergence")
    em = data.table("emergence")
    em = em[em["metric"] == data.metric]
    mirage = {(str(r["mode"]), int(r["k"])): r for r in data.table("mirage").to_dict("records")}
    rows, reasons = [], []
    for r in em.sort_values(["mode", "k"]).to_dict("records"):
        onset = onset_label(data, r["onset_loss"])
        m = mirage.get((str(r["mode"]), int(r["k"])), {})
        rows.append([r["mode"], r["k"], f"{num(r['n_above_chance'])}/{num(r['n_checkpoints'])}",
                     Cell(f"{onset} (loss {num(r['onset_loss'])})" if onset else None, "never above chance"),
                     Cell(r["sharpness"], "curve changes by less than 0.1"),
                     ival(r, "breakpoint_loss"), m.get("sharpness_gold_logprob"), m.get("sharpness_partial_credit"),
                     m.get("verdict")])
        reasons.append(r.get("reason"))
    intro = (f"Above chance: exact one-sided binomial test per checkpoint of <code>{esc(data.metric)}</code>, Holm-"
             "corrected; onset = the highest-loss checkpoint above chance. Sharpness = share of the curve's change "
             "inside its steepest 20% window (0.2 = straight line, 1 = step), against log δ here; the mirage check "
             "(Schaeffer et al. 2023) compares exact match with gold log-prob and partial credit on the same items, "
             "against raw loss.")
    tab = table(["mode", "k", "above chance", "onset", "sharpness", "breakpoint loss [95% CI]",
                 "sharpness gold log-prob", "sharpness partial credit", "mirage verdict"], rows,
                keys=["mode", "k", "above", "onset", "sharpness", "breakpoint", "sharp_logprob", "sharp_partial",
                      "verdict"], row_reasons=reasons)
    return section("emergence", "Emergence detection and mirage check", intro, status_line(entry),
                   figure("mirage", figs.get("mirage"), "Exact match, partial credit and gold log-prob vs loss"),
                   tab, full(data, "emergence"), full(data, "mirage"), full(data, "above_chance"))


def seen_heldout_section(data: ReportData, figs: Figures) -> str:
    """Seen minus held-out competence."""
    entry, gap = data.analysis("seen_heldout"), data.table("seen_heldout")
    gap = gap[gap["metric"] == data.metric]
    ids = [c for c in data.order() if c in set(gap["checkpoint_id"].astype(str))]
    lookup = {(str(r["checkpoint_id"]), str(r["mode"]), int(r["k"])): r for r in gap.to_dict("records")}
    rows = [[cell_key(m, k), *[ival(lookup.get((c, m, k), {}), "gap", reason_of(lookup.get((c, m, k), {}).get(
        "reason")) or "not administered") for c in ids]] for m, k in cells_of(gap)]
    intro = (f"Competence on seen skill combinations minus held-out ones (<code>{esc(data.metric)}</code>, "
             f"chance-corrected); mean gap <b>{esc(num(entry.get('mean_gap')))}</b>; the 95% interval excludes 0 in "
             f"<b>{esc(num(entry.get('n_cells_ci_excludes_0')))}</b> of {esc(num(entry.get('n_cells')))} cells.")
    headers = ["cell", *[data.label(c) for c in ids]]
    return section("seen_heldout", "Seen vs held-out skill combinations", intro, status_line(entry),
                   figure("seen_heldout", figs.get("seen_heldout"), "Seen minus held-out competence per k"),
                   table(headers, rows, keys=["cell", *ids]), full(data, "seen_heldout"))


def paired_section(data: ReportData, figs: Figures) -> str:
    """Paired comparison of the report's pair of checkpoints."""
    pair = data.pair
    rows = [[r["mode"], r["k"], r["n_pairs"], r["both_right"], r["only_a"], r["only_b"], r["both_wrong"],
             Cell(r["p_value"], "no pairs"), Cell(r["p_adjusted"], "no pairs"), ival(r, "diff")]
            for r in pair.to_dict("records")]
    reasons = list(pair["reason"]) if "reason" in pair else None
    names = ""
    if len(pair):
        names = (f" A = <b>{esc(data.label(pair['checkpoint_a'].iloc[0]))}</b>, "
                 f"B = <b>{esc(data.label(pair['checkpoint_b'].iloc[0]))}</b>.")
    intro = (f"{esc(data.pair_note)}{names} Same items on both checkpoints; a sign-flip test over skill-tuple "
             "clusters (exact; McNemar's test when every cluster has one item), Holm-adjusted across the cells, "
             "and a paired cluster-bootstrap interval of mean(A) − mean(B). Compare any two checkpoints "
             "with <code>emergence compare RUN A B</code>.")
    tab = table(["mode", "k", "pairs", "both right", "only A right", "only B right", "both wrong", "clustered p",
                 "Holm p", "mean(A) − mean(B) [95% CI]"], rows,
                keys=["mode", "k", "n_pairs", "both_right", "only_a", "only_b", "both_wrong", "p_value", "p_adjusted",
                      "diff"],
                row_reasons=reasons)
    return section("paired", "Paired comparison", intro, status_line(data.analysis("paired")),
                   figure("paired", figs.get("paired"), "Paired difference per cell"), tab,
                   full(data, "paired"))


def checkpoints_section(data: ReportData, figs: Figures) -> str:
    """One row per checkpoint."""
    rows = []
    for r in data.checkpoints.to_dict("records"):
        err = reason_of(r.get("error"))
        nats, n_bytes = pd.to_numeric(r.get("ce_nats_sum"), errors="coerce"), pd.to_numeric(r.get("ce_bytes"),
                                                                                          errors="coerce")
        bpb = nats / n_bytes / math.log(2) if n_bytes and n_bytes > 0 else np.nan
        rows.append([r["label"], short_id(r["checkpoint_id"], 12), r.get("size"), r.get("params"),
                     r.get("params_nonembedding"), r.get("step"), r.get("tokens_seen"),
                     Cell(r.get("loss"), err or "no held-out tokens scored"), Cell(bpb, err or "no byte count"),
                     r.get("entropy_floor"), Cell(r.get("excess_loss"), reason_of(r.get("excess_reason")))])
    intro = "Rows from highest to lowest loss. Loss: cross-entropy of the held-out text, nats/token."
    tab = table(["checkpoint", "id", "size", "params", "non-embedding", "step", "tokens seen", "loss (nats/token)",
                 "bits/byte", "entropy floor", "δ"], rows,
                keys=["checkpoint", "id", "size", "params", "params_nonembedding", "step", "tokens_seen", "loss",
                      "bits_per_byte", "entropy_floor", "excess"])
    return section("checkpoints", "Checkpoints", intro, tab)


def failures_section(data: ReportData, figs: Figures) -> str:
    """Every NaN record, failed checkpoint and skipped analysis, counted by reason."""
    rec = data.records
    parts = []
    if len(rec) and "value" in rec:
        failed = rec[pd.to_numeric(rec["value"], errors="coerce").isna()]
        errors = failed["error"] if "error" in failed else pd.Series([None] * len(failed), index=failed.index)
        why = errors.where(errors.notna(), "no reason given").astype(str)
        counts = failed.assign(reason=why).groupby(["reason", "metric"]).size().reset_index(name="n")
        parts.append(f"<p>{esc(num(len(failed)))} of {esc(num(len(rec)))} records have no value (NaN).</p>")
        parts.append(table(["reason", "metric", "records"], counts.values.tolist(), keys=["reason", "metric", "n"]))
    ck = data.checkpoints
    bad = ck[ck["error"].map(lambda e: not is_missing(e))]
    parts.append(f"<p>{esc(num(len(bad)))} of {esc(num(len(ck)))} checkpoints failed.</p>")
    parts.append(table(["checkpoint", "id", "error"],
                       [[r["label"], short_id(r["checkpoint_id"], 12), r["error"]] for r in bad.to_dict("records")],
                       keys=["checkpoint", "id", "error"]))
    not_ok = [[name, e.get("status"), e.get("reason")] for name, e in data.summary.get("analyses", {}).items()
              if e.get("status") != "ok"]
    parts.append(f"<p>{esc(plural(len(not_ok), 'analysis', 'analyses'))} did not run.</p>")
    parts.append(table(["analysis", "status", "reason"], not_ok, keys=["analysis", "status", "reason"]))
    missing = [[name, where, why] for name, e in data.summary.get("analyses", {}).items()
               for where, why in missing_values(e)]
    unknown = data.summary.get("n_records_unknown_checkpoint", 0)
    parts.append(details(f"{len(missing)} summary values are missing; {unknown} records name an unknown checkpoint",
                         table(["analysis", "value", "reason"], missing, keys=["analysis", "value", "reason"])))
    return section("failures", "Failures", "Failures are values: each is counted here with its reason.", *parts)
