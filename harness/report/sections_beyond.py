"""Report sections of composition beyond the trained k and on unseen tuples: failure kinds, slingshot, shots.

Same contract as `sections`: `ReportData` and figures in, one `<section>` with a stable id out.
"""
from __future__ import annotations

from harness.report.data import ReportData
from harness.report.elements import Cell, esc, ival, section, status_line, table
from harness.report.fmt import is_missing, num
from harness.report.sections import Figures, best_checkpoint, full, reason_of


def failure_kinds_section(data: ReportData, figs: Figures) -> str:
    """Shares of right answers, format failures and skill failures on the lowest-loss checkpoint."""
    entry, kinds = data.analysis("failure_kinds"), data.table("failure_kinds")
    best = best_checkpoint(data, kinds["checkpoint_id"]) if len(kinds) else None
    measured = entry.get("status") == "ok"  # otherwise every share is NaN with one reason, said once above
    rows = kinds[kinds["checkpoint_id"].astype(str) == best] if best and measured else kinds.iloc[:0]
    body = [[r["mode"], int(r["k"]), r["split"], r["n"],
             *[Cell(r[c], reason_of(r["reason"])) for c in ("share_none", "share_format", "share_skill", "share_unknown")]]
            for r in rows.to_dict("records")]
    intro = ("Why composite answers are wrong. A <b>format failure</b> writes the wrong number of answers or never "
             "stops; a <b>skill failure</b> has the right number of answers and stops, but some answer is wrong. "
             "A score of 0 beyond the trained k is a finding about composition only when its failures are skill "
             "failures." + (f" Shares below are for the lowest-loss checkpoint, <b>{esc(data.label(best))}</b>."
                            if best and measured else ""))
    tab = table(["mode", "k", "split", "items", "right", "format failure", "skill failure", "kind unknown"], body,
                keys=["mode", "k", "split", "n", "share_none", "share_format", "share_skill", "share_unknown"])
    return section("failure_kinds", "Format or skill failures", intro, status_line(entry), tab,
                   full(data, "failure_kinds"))


def slingshot_section(data: ReportData, figs: Figures) -> str:
    """The slingshot verdict per (mode, k)."""
    entry, summary = data.analysis("slingshot"), data.table("slingshot_summary")
    rows = [[r["mode"], int(r["k"]), int(r["k2"]), f"{num(r['n_tuples_k'])} / {num(r['n_tuples_2k'])}",
             r["n_dropped_inside_seen"], Cell(r["format_share_2k"], "format and skill failures not told apart"),
             r["n_checkpoints"], ival(r, "mean_diff", reason_of(r["reason"])), r["verdict"]]
            for r in summary.to_dict("records")]
    intro = ("Arora and Goyal's slingshot: a model whose excess loss is half another's should do on 2k-skill "
             "tuples what the other does on k-skill tuples, even when it never saw those 2k-tuples. On "
             "<b>held-out</b> tuples only: for every checkpoint, its competence on 2k-tuples minus the k-tuple "
             "competence curve (monotone, over all checkpoints) read at twice its excess loss; the mean over "
             "checkpoints has a 95% interval from resampling skill tuples. Held-out tuples that sit inside a seen "
             "larger tuple were in training and are dropped. Calibration (simulated families, 12 tuples per k): "
             "see the calibration table, rows slingshot_*.")
    tab = table(["mode", "k", "2k", "tuples k / 2k", "dropped (inside seen)", "format share of 2k failures",
                 "checkpoints", "mean q_2k(δ) − q_k(2δ) [95% CI]", "verdict"], rows,
                keys=["mode", "k", "k2", "tuples", "n_dropped_inside_seen", "format_share_2k", "n_checkpoints",
                      "mean_diff", "verdict"],
                row_reasons=[reason_of(r) for r in summary["reason"]] if len(summary) else None)
    return section("slingshot", "Slingshot: 2k-tuples at half the excess loss", intro, status_line(entry), tab,
                   full(data, "slingshot"))


def shots_section(data: ReportData, figs: Figures) -> str:
    """Gain per in-context example on held-out tuples and its trend with loss."""
    entry, trend = data.analysis("shots"), data.table("shots_trend")
    rows = [[r["mode"], int(r["k"]), r["step"], r["n_checkpoints"], ival(r, "mean_gain", reason_of(r["reason"])),
             ival(r, "slope", reason_of(r["reason"])), _reading(r)] for r in trend.to_dict("records")]
    intro = ("How much one more worked example in the prompt helps on <b>held-out</b> tuples (chance-corrected "
             "competence with s + 1 examples minus with s), per checkpoint, and whether the gain grows as loss "
             "falls: the least-squares slope of the gain on loss (negative: lower-loss checkpoints gain more). "
             "95% intervals resample skill tuples, floored by the items' binomial uncertainty.")
    tab = table(["mode", "k", "examples", "checkpoints", "mean gain [95% CI]", "slope on loss [95% CI]", "reading"],
                rows, keys=["mode", "k", "step", "n_checkpoints", "mean_gain", "slope", "verdict"])
    return section("shots", "In-context examples on unseen tuples", intro, status_line(entry), tab,
                   full(data, "shots_gain"))


def _reading(row: dict) -> str:
    lo, hi = row.get("slope_lo"), row.get("slope_hi")
    if is_missing(lo) or is_missing(hi):
        return "no slope"
    if hi < 0:
        return "lower-loss checkpoints gain more"
    if lo > 0:
        return "higher-loss checkpoints gain more"
    return "no trend resolved"
