"""The headline box at the top of the report: did composite skills emerge, did the theory predict it, does it
generalize — readable in a minute, every number traceable to a section below.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from harness.analysis.result import why_missing
from harness.records import SINGLE_MODE
from harness.report.data import ReportData
from harness.report.elements import esc, table
from harness.report.fmt import DASH, interval, is_missing, num, pct, plural
from harness.report.sections import best_checkpoint, tested_cells
from harness.report.sections_checks import onset_label

NEAR_ONE = (0.8, 1.25)
"""Range of the median product-rule ratio read as "close to the product rule"."""


def value(entry: dict[str, Any], key: str, missing: Mapping[str, str] | None = None, percent: bool = False) -> str:
    """Escaped value of a summary entry (as a percentage when `percent`), or "— (reason)" when it is missing."""
    v = entry.get(key)
    if not is_missing(v):
        return esc(pct(v) if percent else num(v))
    why = (missing or {}).get(key) or entry.get("reason") or "not estimable"
    return f'<span class="na">{DASH}</span> <span class="why">({esc(why)})</span>'


def _overview(data: ReportData) -> str:
    ck, s = data.checkpoints, data.summary
    loss = ck["loss"].dropna()
    unit = ck["loss_unit"].iloc[0] if "loss_unit" in ck.columns and len(ck) else "nats/token"
    span = f"loss {num(loss.max())} → {num(loss.min())} {unit}" if len(loss) else "no checkpoint has a loss"
    notes: dict[str, list[str]] = {}
    for label, note in zip(ck["label"], ck["note"] if "note" in ck.columns else []):
        if not is_missing(note):
            notes.setdefault(str(note), []).append(str(label))
    n_bad = int(ck["error"].map(lambda e: not is_missing(e)).sum())
    return (f"<p class=\"overview\">Run <code>{esc(data.run_id)}</code>: {len(ck)} checkpoints ({n_bad} failed), "
            f"{esc(span)}; metric <code>{esc(data.metric)}</code>; k = {esc(', '.join(map(str, s.get('ks', []))) or DASH)}; "
            f"modes {esc(', '.join(s.get('modes', [])) or DASH)}.</p>"
            + "".join(f'<p class="why">Note: {esc(note)} ({esc(plural(len(labels), "checkpoint"))}: '
                      f'{esc(", ".join(labels[:3]) + (", ..." if len(labels) > 3 else ""))}).</p>'
                      for note, labels in sorted(notes.items())))


def _cell_text(data: ReportData, r: dict[str, Any]) -> str:
    """"a/N above chance, onset at <checkpoint> (loss L), breakpoint B [lo, hi]" for one (mode, k) row.

    Window sharpness is left out: it depends on how far the checkpoints extend in loss.
    """
    text = f"{num(r['n_above_chance'])}/{num(r['n_checkpoints'])} above chance"
    onset = onset_label(data, r["onset_loss"])
    if onset:
        text += f"; onset {onset} (loss {num(r['onset_loss'])})"
    if not is_missing(r["breakpoint_loss"]):
        text += f"; breakpoint {interval(r['breakpoint_loss'], r['breakpoint_lo'], r['breakpoint_hi'])}"
    return text


def _verdicts(data: ReportData) -> str:
    """Each distinct mirage verdict once, with the cells it applies to."""
    mirage = data.table("mirage")
    if mirage.empty:
        return f"<p><b>Mirage check:</b> {DASH} (no exact-match, partial-credit or gold log-prob cells)</p>"
    items = []
    for verdict, rows in mirage.groupby("verdict", sort=False):
        cells = "; ".join(f"{m} k={', '.join(str(int(k)) for k in g['k'])}" for m, g in rows.groupby("mode"))
        items.append(f"<li>{esc(verdict)} <span class=\"why\">({esc(cells)})</span></li>")
    return f"<p><b>Mirage check</b> (Schaeffer et al. 2023):</p><ul>{''.join(items)}</ul>"


def _emergence(data: ReportData) -> str:
    em = data.table("emergence")
    em = em[em["metric"] == data.metric]
    if em.empty:
        reason = data.analysis("emergence").get("reason") or "no emergence table"
        return f"<h3>Did emergence appear?</h3><p>{DASH} ({esc(reason)})</p>"
    composite = em[em["mode"] != SINGLE_MODE]
    above = pd.to_numeric(composite["n_above_chance"], errors="coerce").fillna(0) > 0
    mirage = data.table("mirage")
    mirage = mirage[mirage["mode"] != SINGLE_MODE]
    survives = int(mirage["verdict"].astype(str).str.startswith("jump survives").sum())
    mirages = int(mirage["verdict"].astype(str).str.startswith("mirage").sum())
    answer = (f"Composite {esc(data.metric)} rose above chance in <b>{int(above.sum())} of {len(composite)}</b> "
              f"(mode, k) cells. Where it jumps, the continuous metric also breaks at the jump (breakpoint test "
              f"against a smooth curve, cluster bootstrap) in <b>{survives}</b> cells and is smooth in "
              f"<b>{mirages}</b> (mirage)." if len(composite) else "No composite items were scored.")
    modes = sorted(em["mode"].astype(str).unique(), key=lambda m: (m != SINGLE_MODE, m))
    lookup = {(str(r["mode"]), int(r["k"])): r for r in em.to_dict("records")}
    ks = sorted({int(k) for k in em["k"]})
    rows = [[k, *[_cell_text(data, lookup[(m, k)]) if (m, k) in lookup else "" for m in modes]] for k in ks]
    tab = table(["k", *modes], rows, keys=["k", *modes], css="compact")
    return f"<h3>Did emergence appear?</h3><p>{answer}</p>{tab}{_verdicts(data)}"


def _best_ratios(data: ReportData, table_: pd.DataFrame) -> str:
    """"at the lowest-loss checkpoint X: chain k=2 1.08 [0.87, 1.64], ..." (empty without one)."""
    best = best_checkpoint(data, table_["checkpoint_id"])
    rows = table_[table_["checkpoint_id"].astype(str) == str(best)].sort_values(["mode", "k"])
    if best is None or rows.empty:
        return ""
    parts = [f"{r['mode']} k={int(r['k'])} {interval(r['ratio'], r['ratio_lo'], r['ratio_hi'])}"
             for r in rows.to_dict("records") if not is_missing(r["ratio"])]
    shown = "; ".join(parts) if parts else "no cell has a finite ratio"
    return f" At the lowest-loss checkpoint ({esc(data.label(best))}): {esc(shown)}."


def _product_line(data: ReportData) -> str:
    entry, table_ = data.analysis("product_rule"), data.table("product_rule")
    trained = data.analysis("collapse").get("trained_ks")
    if trained:  # cells beyond the trained k are summarized apart (median_ratio_out_of_distribution)
        table_ = table_[pd.to_numeric(table_["k"], errors="coerce").isin(trained)]
    med = entry.get("median_ratio")
    lo, hi = (pd.to_numeric(table_[c], errors="coerce") for c in ("ratio_lo", "ratio_hi"))
    has = lo.notna() & hi.notna()
    contains = int(((lo <= 1) & (hi >= 1) & has).sum())
    if is_missing(med):
        reading = ""
    elif NEAR_ONE[0] <= med <= NEAR_ONE[1]:
        reading = " — close to the product rule (skills combine independently)"
    else:
        reading = (" — composites do <b>worse</b> than the product of single skills" if med < NEAR_ONE[0]
                   else " — composites do <b>better</b> than the product of single skills")
    cells = entry.get("n_ratio_cells")
    over = f"the {cells} cells of trained k with an informative prediction" if cells is not None else "all checkpoints"
    ood = entry.get("median_ratio_out_of_distribution")
    ood_text = "" if is_missing(ood) else f" Out-of-distribution k (never trained): median {esc(num(ood))}, apart."
    return (f"<li><b>Product rule</b> (raw product of single-skill rates, both sides chance-corrected alike): median "
            f"observed/predicted over {over} = {value(entry, 'median_ratio')}{reading}; its 95% interval contains 1 in "
            f"{contains} of {int(has.sum())} cells.{_best_ratios(data, table_)}{ood_text}</li>")


def _theory(data: ReportData) -> str:
    items = [_product_line(data)]
    tests = data.analysis("collapse").get("tests") or []
    trained = data.analysis("collapse").get("trained_ks")
    scope = f"k = {', '.join(map(str, trained))}, the trained k" if trained else "every k"
    for t in tests:
        shared_c = esc(interval(t.get("c_shared"), t.get("c_shared_lo"), t.get("c_shared_hi"))
                       if not is_missing(t.get("c_shared")) else f"{DASH} ({t.get('c_shared_reason') or 'not run'})")
        ps = (f"one shared curve F(k·δ) without a form: p = {value(t, 'p_shared_curve')}; exponent c of "
              f"F(k<sup>c</sup>·δ) = {shared_c} (A&amp;G: 1, independence: 1/b); "
              f"p(a≤1) = {value(t, 'p_a_eq_1', why_missing(t))}")
        diff = esc(interval(t.get("a_minus_b"), t.get("a_minus_b_lo"), t.get("a_minus_b_hi")))
        items.append(f"<li><b>Collapse test ({esc(t.get('mode'))}, {esc(scope)}):</b> {esc(t.get('verdict') or DASH)} "
                     f"({ps}; pooled Weibull fit, descriptive: p(a=b) = {value(t, 'p_a_eq_b', why_missing(t))}, "
                     f"a − b = {diff}).</li>")
    ood = data.analysis("collapse").get("out_of_distribution") or []
    if ood:
        shown = "; ".join(f"{o['mode']} k={o['k']} max {num(o['max_competence'])}" for o in ood)
        items.append(f"<li><b>Beyond the trained k</b> (left out of the tests): {esc(shown)}.</li>")
    rule = data.analysis("ag_cor13").get("rule") or []
    if rule:
        shown = "; ".join(f"{r['mode']} k={r['k']} {interval(r.get('mean_diff'), r.get('mean_diff_lo'), r.get('mean_diff_hi'))}"
                          for r in rule if not is_missing(r.get("mean_diff")))
        n_ok = sum(bool(r.get("consistent")) for r in rule)
        items.append(f"<li><b>Cor. 13</b> (q<sub>k</sub>(δ) = q<sub>1</sub>(k·δ)): mean difference {esc(shown)}; "
                     f"consistent in {n_ok} of {len(rule)} (mode, k).</li>")
    if not tests:
        reason = data.analysis("collapse").get("reason") or "did not run"
        items.append(f"<li><b>Collapse test:</b> {DASH} ({esc(reason)})</li>")
    ag = data.analysis("ag_failure")
    ag_miss = why_missing(ag)
    tail = data.analysis("ag_tail_bound")
    b = ag.get("b")
    b_text = esc(interval(b, ag.get("b_lo"), ag.get("b_hi"))) if not is_missing(b) else value(ag, "b", ag_miss)
    law = ag.get("linear_law")
    law_text = f" — {esc(law)}" if law else ""
    items.append(f"<li><b>Arora–Goyal:</b> single-skill failure ∝ δ<sup>b</sup> with b = {b_text} (their law: "
                 f"b = 1){law_text}; k-tuple bound holds in {value(ag, 'fraction_within_union', ag_miss, True)} of composite cells; "
                 f"tail bound holds in {value(tail, 'fraction_holds', why_missing(tail), True)} "
                 f"of the {esc(tested_cells(tail))}.</li>")
    return f"<h3>Did the theory predict it?</h3><ul>{''.join(items)}</ul>"


def _generalization(data: ReportData) -> str:
    entry = data.analysis("seen_heldout")
    s = data.summary
    n_bad_ck = int(data.checkpoints["error"].map(lambda e: not is_missing(e)).sum())
    not_ok = [n for n, e in s.get("analyses", {}).items() if e.get("status") != "ok"]
    top = entry.get("largest_trained_k")
    nested = bool(entry.get("caveat"))
    at_top = (f" At k = {top}, the largest trained k{' (the only one whose held-out tuples were never together in training)' if nested else ''}: "
              f"mean {value(entry, 'mean_gap_largest_k')}, interval excludes 0 in "
              f"{value(entry, 'n_cells_ci_excludes_0_largest_k')} of {value(entry, 'n_cells_largest_k')} cells."
              if top is not None else "")
    caveat = (" Smaller held-out tuples occur inside seen larger training pieces, so over all k the gap does not "
              "measure generalization to unseen combinations." if top is not None and nested else
              " No held-out tuple lies inside a seen larger tuple of this run (a downward-closed split), so every k "
              "compares combinations never trained together." if top is not None else "")
    return (f"<h3>Seen vs held-out, and failures</h3><ul><li><b>Seen − held-out gap:</b>{at_top}{caveat} Over all "
            f"k: mean {value(entry, 'mean_gap')}; interval excludes 0 in {value(entry, 'n_cells_ci_excludes_0')} of "
            f"{value(entry, 'n_cells')} cells (positive = memorized combinations do better).</li>"
            f"<li><b>Failures:</b> {esc(num(s.get('n_failed_records', 0)))} of {esc(num(s.get('n_records', 0)))} "
            f"records without a value, {plural(n_bad_ck, 'failed checkpoint')}, "
            f"{plural(len(not_ok), 'analysis', 'analyses')} not run"
            f"{': ' + esc(', '.join(not_ok)) if not_ok else ''} (see <a href=\"#failures\">Failures</a>).</li></ul>")


def below_choices_only(records: pd.DataFrame, metric: str = "mc_accuracy") -> pd.DataFrame:
    """Checkpoints whose multiple-choice accuracy is below their choices-only baseline (the same choices scored
    with the question removed), over the items where both are known: checkpoint_id, accuracy, baseline, n."""
    columns = ["checkpoint_id", "accuracy", "baseline", "n"]
    if records.empty or "choices_only" not in records.columns:
        return pd.DataFrame(columns=columns)
    rows = records[records["metric"] == metric]
    value = pd.to_numeric(rows["value"], errors="coerce")
    base = pd.to_numeric(rows["choices_only"], errors="coerce")
    ok = rows.assign(accuracy=value, baseline=base)[value.notna() & base.notna()]
    per = ok.groupby("checkpoint_id").agg(accuracy=("accuracy", "mean"), baseline=("baseline", "mean"),
                                          n=("accuracy", "size")).reset_index()
    return per[per["accuracy"] < per["baseline"]][columns].reset_index(drop=True)


def _mc_baseline(data: ReportData) -> str:
    below = below_choices_only(data.records)
    if below.empty:
        return ""
    items = "".join(f"<li>{esc(data.label(r.checkpoint_id))}: {esc(num(r.accuracy))} &lt; {esc(num(r.baseline))} "
                    f"({esc(num(r.n))} items)</li>" for r in below.itertuples())
    return ("<p><b>Multiple choice below its choices-only baseline</b> (<code>mc_accuracy</code> vs the same "
            "choices scored with the question removed; the distractors' own bias, not 1/choices, is what "
            f"such a model fails to beat):</p><ul>{items}</ul>")


def headline(data: ReportData) -> str:
    """The headline box (`<section id="headline">`)."""
    return (f'<section id="headline" class="headline"><h2>Headline</h2>{_overview(data)}{_emergence(data)}'
            f"{_theory(data)}{_generalization(data)}{_mc_baseline(data)}</section>")
