"""The headline box at the top of the report: did composite skills emerge, did the theory predict it, does it
generalize — readable in a minute, every number traceable to a section below.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from harness.report.data import SINGLE_MODE, ReportData
from harness.report.elements import esc, table
from harness.report.fmt import DASH, interval, is_missing, num, pct, plural
from harness.report.sections import best_checkpoint, missing_reasons, tested_cells
from harness.report.sections_checks import onset_label

NEAR_ONE = (0.8, 1.25)
"""Range of the median product-rule ratio read as "close to the product rule"."""


def value(entry: dict[str, Any], key: str, missing: dict[str, str] | None = None, percent: bool = False) -> str:
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
    """"a/N above chance, onset at <checkpoint> (loss L), sharpness S" for one (mode, k) row."""
    text = f"{num(r['n_above_chance'])}/{num(r['n_checkpoints'])} above chance"
    onset = onset_label(data, r["onset_loss"])
    if onset:
        text += f"; onset {onset} (loss {num(r['onset_loss'])})"
    if not is_missing(r["sharpness"]):
        text += f"; sharpness {num(r['sharpness'])}"
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
    sharp = pd.to_numeric(composite["sharpness"], errors="coerce") >= 0.5
    answer = (f"Composite {esc(data.metric)} rose above chance in <b>{int(above.sum())} of {len(composite)}</b> "
              f"(mode, k) cells; the rise was sharp (sharpness ≥ 0.5) in <b>{int((above & sharp).sum())}</b>."
              if len(composite) else "No composite items were scored.")
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
    over = f"the {cells} cells with an informative prediction" if cells is not None else "all checkpoints"
    return (f"<li><b>Product rule:</b> median observed/predicted over {over} = "
            f"{value(entry, 'median_ratio')}{reading}; its 95% interval contains 1 in {contains} of "
            f"{int(has.sum())} cells.{_best_ratios(data, table_)}</li>")


def _theory(data: ReportData) -> str:
    items = [_product_line(data)]
    tests = data.analysis("collapse").get("tests") or []
    miss = missing_reasons(data, "collapse")
    for i, t in enumerate(tests):
        ps = (f"p(a=b) = {value(t, 'p_a_eq_b', {'p_a_eq_b': miss.get(f'tests[{i}].p_a_eq_b')})}, "
              f"p(a=1) = {value(t, 'p_a_eq_1', {'p_a_eq_1': miss.get(f'tests[{i}].p_a_eq_1')})}")
        items.append(f"<li><b>Collapse test ({esc(t.get('mode'))}):</b> {esc(t.get('verdict') or DASH)} "
                     f"({ps}; a = {value(t, 'a')}, b = {value(t, 'b')}).</li>")
    if not tests:
        reason = data.analysis("collapse").get("reason") or "did not run"
        items.append(f"<li><b>Collapse test:</b> {DASH} ({esc(reason)})</li>")
    ag, ag_miss = data.analysis("ag_failure"), missing_reasons(data, "ag_failure")
    tail = data.analysis("ag_tail_bound")
    b = ag.get("b")
    b_text = esc(interval(b, ag.get("b_lo"), ag.get("b_hi"))) if not is_missing(b) else value(ag, "b", ag_miss)
    items.append(f"<li><b>Arora–Goyal:</b> single-skill failure ∝ δ<sup>b</sup> with b = {b_text} (their law: "
                 f"b = 1); k-tuple bound holds in {value(ag, 'fraction_within_union', ag_miss, True)} of composite cells; "
                 f"tail bound holds in {value(tail, 'fraction_holds', missing_reasons(data, 'ag_tail_bound'), True)} "
                 f"of the {esc(tested_cells(tail))}.</li>")
    return f"<h3>Did the theory predict it?</h3><ul>{''.join(items)}</ul>"


def _generalization(data: ReportData) -> str:
    entry = data.analysis("seen_heldout")
    s = data.summary
    n_bad_ck = int(data.checkpoints["error"].map(lambda e: not is_missing(e)).sum())
    not_ok = [n for n, e in s.get("analyses", {}).items() if e.get("status") != "ok"]
    return (f"<h3>Seen vs held-out, and failures</h3><ul><li><b>Seen − held-out gap:</b> mean "
            f"{value(entry, 'mean_gap')}; interval excludes 0 in {value(entry, 'n_cells_ci_excludes_0')} of "
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
