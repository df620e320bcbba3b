"""Prints the README's family tables and its "What these numbers say" section from a run's calibrated analysis.

Usage: ``python benchmarks/readme_findings.py RUN_DIR`` where RUN_DIR is the main job's run directory
(``emergence run`` on the built-in family; analysis.json is written by ``emergence analyze RUN_DIR``).
The output is the markdown pasted into the README, so the section can be checked against any rerun.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from harness.records import skill_name

ROOT = Path(__file__).resolve().parent.parent
"""The repository (benchmarks/results/calibration.json holds the calibration the findings cite)."""


def _f(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _ci(r: dict, col: str, digits: int = 2, stem: str | None = None) -> str:
    stem = stem or col
    return f"{_f(r[col], digits)} [{_f(r[stem + '_lo'], digits)}, {_f(r[stem + '_hi'], digits)}]"


N_BOOT = 200
"""Bootstrap replicates of the analysis (emergence analyze's default)."""


def _p(p: float | None) -> str:
    """"= p" for a bootstrap p-value, marked at the floor of a 200-replicate bootstrap (1/201 or 2/201)."""
    if p is None:
        return "n/a"
    return f"= {p:.3f} (the bootstrap's floor)" if p <= 2.0 / (N_BOOT + 1) + 1e-9 else f"= {p:.3f}"


def load(run: Path) -> tuple[dict, dict[str, pd.DataFrame], pd.DataFrame]:
    summary = json.loads((run / "analysis.json").read_text())
    tables = {name: pd.read_parquet(run / path) for name, path in summary["tables"].items()}
    checkpoints = pd.read_parquet(run / "checkpoints.parquet")
    checkpoints["loss"] = checkpoints["ce_nats_sum"] / checkpoints["ce_tokens"]
    return summary, tables, checkpoints


def cross_entropy(ck: pd.DataFrame) -> str:
    final = ck.sort_values("step").groupby("size").tail(1).set_index("size")
    sizes = final.sort_values("params").index.tolist()
    body = ", ".join(f"{s} {final.loc[s, 'loss']:.3f}" for s in sizes)
    floor = float(ck["entropy_floor"].iloc[0])
    return (f"- **Cross-entropy** at the last step, by size: {body} nats/token (exact floor {floor:.3f}); every "
            "checkpoint stays above the floor.")


def _trained_ks(analyses: dict) -> list[int]:
    return list(analyses["collapse"].get("trained_ks") or [1, 2, 3, 4])


def _over_training(comp: pd.DataFrame, ck: pd.DataFrame, k: int) -> str:
    """Conjunction exact match at k for the largest size over its checkpoints, and where it jumped most."""
    largest = ck.loc[ck["params"].idxmax(), "size"]
    rows = ck[ck["size"] == largest].sort_values("step")
    at = comp.query("mode == 'conjunction' and k == @k").groupby("checkpoint_id")["competence"].mean()
    q = rows["checkpoint_id"].map(at).to_numpy()
    if len(q) < 2 or not np.isfinite(q).all():
        return ""
    jump = int(np.argmax(np.diff(q)))
    seq = " -> ".join(f"{v:.2f}" for v in q)
    steps = f"{int(rows['step'].iloc[0])}-{int(rows['step'].iloc[-1])}"
    return (f"conjunction k = {k} goes {seq} for {largest} over steps {steps}, the largest jump while its loss moves "
            f"from {rows['loss'].iloc[jump]:.3f} to {rows['loss'].iloc[jump + 1]:.3f}")


def emergence(tables: dict, ck: pd.DataFrame, analyses: dict) -> list[str]:
    em = tables["emergence"].query("metric == 'exact_match'")
    top = max(_trained_ks(analyses))
    lines = []

    def bps(mode: str) -> str:
        rows = em.query("mode == @mode").sort_values("k").to_dict("records")
        return "; ".join(f"k = {int(r['k'])}{'*' if int(r['k']) > top else ''}: "
                         f"{_ci(r, 'breakpoint_loss', stem='breakpoint')}" for r in rows)

    single = em.query("mode == 'single'")
    sbp = _ci(single.iloc[0].to_dict(), "breakpoint_loss", stem="breakpoint") if len(single) else "n/a"
    comp = tables["competence"].query("metric == 'exact_match'")
    if "n_shots" in comp:
        comp = comp[pd.to_numeric(comp["n_shots"], errors="coerce").fillna(0) == 0]
    max_k = int(comp["k"].max())
    course = "; ".join(x for x in (_over_training(comp, ck, top), _over_training(comp, ck, max_k)) if x)
    lines.append(f"- **Breakpoints** of exact match (loss below which competence leaves chance, threshold form; 95% "
                 f"interval: expanded cluster bootstrap, widened to the checkpoints on either side of the estimate; "
                 f"* marks k beyond the trained {top}): single skills {sbp}; chain {bps('chain')}; conjunction (the "
                 f"A&G setting: k independent questions in one piece) {bps('conjunction')}."
                 + (f" Over training (both splits), {course}." if course else ""))
    mirage = tables["mirage"]
    parts = []
    for mode in ("chain", "conjunction"):
        rows = mirage.query("mode == @mode").sort_values("k")
        parts.append(f"{mode} " + ", ".join(
            f"k = {int(r['k'])}: {'breaks' if str(r['verdict']).startswith('jump') else 'smooth' if str(r['verdict']).startswith('mirage') else 'no jump'}"
            f" (p {_p(r['p_breakpoint'])})" for r in rows.to_dict("records")))
    lines.append("- **Mirage check** (does mean gold log-prob break where exact match jumps, against a smooth "
                 "monotone curve of the loss; cluster-bootstrap p): " + "; ".join(parts) + ". Where gold "
                 "log-prob is smooth the exact-match jump is a metric artifact (a mirage); where it breaks too, the "
                 "jump is in the model.")
    return lines


def theory(tables: dict, analyses: dict, labels: pd.Series, ck_loss: pd.Series) -> list[str]:
    col = analyses["collapse"]
    lines = []
    tests = "; ".join(
        f"{t['mode']}: shared-curve p {_p(t['p_shared_curve'])}, collapse exponent c = {_ci(t, 'c_shared')} (A&G: 1), "
        f"p(a <= 1, one-sided) {_p(t['p_a_eq_1'])}; pooled Weibull fit (descriptive): a = {_ci(t, 'a')}, "
        f"b = {_ci(t, 'b')}, a - b = {_ci(t, 'a_minus_b')}, p(a = b) {_p(t['p_a_eq_b'])}"
        for t in col["tests"])
    verdicts = {t["mode"]: t["verdict"] for t in col["tests"]}
    both = all(v.startswith("both") for v in verdicts.values())
    shared = all((t["p_shared_curve"] or 1.0) < 0.05 for t in col["tests"])
    reading = (" Neither A&G's collapse (a = b) nor independent skills (a <= 1) describes these curves"
               + ("; the non-parametric test (one monotone curve of k delta for every k) rejects a shared curve "
                  "too, so this is not an artifact of the fitted form." if shared else ".")) if both else ""
    lines.append(f"- **Collapse test** on the trained k = {', '.join(map(str, col['trained_ks'] or []))} "
                 f"(cluster bootstrap over skill tuples): {tests}. Verdicts: "
                 + "; ".join(f"{m}: {v}" for m, v in verdicts.items()) + "." + reading)
    rule = analyses["ag_cor13"]["rule"]
    lines.append("- **Cor. 13** (competence on k-tuples at delta equals single-skill competence at k delta; mean "
                 "difference over checkpoints, 95% interval): "
                 + "; ".join(f"{r['mode']} k = {r['k']}: {_ci(r, 'mean_diff')}" for r in rule) + ".")
    ag = analyses["ag_failure"]
    lines.append(f"- **Failure law**: single-skill failure ~ delta^b with b = {_ci(ag, 'b')}; "
                 f"{ag.get('linear_law') or 'no interval'}.")
    pr = analyses["product_rule"]
    table = tables["product_rule"].assign(label=lambda t: t["checkpoint_id"].map(labels))
    table = table.assign(loss=table["checkpoint_id"].map(ck_loss))
    top_k = max(col["trained_ks"] or [4])
    cells = table[(table["mode"] == "conjunction") & (table["k"] == top_k)]
    gap = pd.to_numeric(cells["predicted"], errors="coerce") - pd.to_numeric(cells["observed"], errors="coerce")
    b = cells.loc[gap.idxmax()] if gap.notna().any() else None
    lowest = table.loc[table["loss"].idxmin(), "label"] if table["loss"].notna().any() else None
    last = table[(table["label"] == lowest) & (table["k"] <= top_k)]
    example = (f"{b['label']} conjunction k = {top_k}: {_f(b['observed'])} observed vs {_f(b['predicted'])} predicted"
               if b is not None else "n/a")
    lines.append(f"- **Product rule** (raw product of single-skill rates, both sides chance-corrected with the "
                 f"composite's chance): where the product over-predicts most ({example}); on the lowest-loss "
                 f"checkpoint ({lowest}) the ratios of k = 2-{top_k} are {_f(last['ratio'].min())}-"
                 f"{_f(last['ratio'].max())}. Median over the {pr['n_ratio_cells']} informative cells of trained k: "
                 f"{_f(pr['median_ratio'])}; beyond the trained k: {_f(pr.get('median_ratio_out_of_distribution'))}.")
    ood = analyses["collapse"]["out_of_distribution"]
    top = max(o["max_competence"] for o in ood) if ood else float("nan")
    beyond = ", ".join(str(k) for k in sorted({int(o["k"]) for o in ood})) or "none"
    reach = ("stay at {:.2f} at every checkpoint: composition does not extend beyond the trained k here" if top < 0.05
             else "reach {:.2f} at best: composition extends beyond the trained k").format(top)
    lines.append(f"- **k = {beyond}** (more skills than any training piece) {reach}. These cells are reported apart "
                 "and left out of the collapse test, Cor. 13, the largest composable k and the product-rule median.")
    return lines


def skill_loss(run: Path, tables: dict) -> str:
    """Where each skill switches on in its own answer loss: k = 1 exact match against per-skill gold-answer loss."""
    rec = pd.read_parquet(run / "records.parquet", columns=["checkpoint_id", "skills", "k", "metric", "value"])
    rec = rec[(rec["k"] == 1) & (rec["metric"] == "exact_match")]
    rec = rec.assign(skills=[skill_name(s) for s in rec["skills"]])  # the k = 1 skill's name, as per_skill_loss
    acc = rec.groupby(["checkpoint_id", "skills"])["value"].mean().rename("accuracy").reset_index()
    per_skill = int(rec.groupby(["checkpoint_id", "skills"]).size().median()) if len(rec) else 0
    loss = tables["per_skill_loss"].rename(columns={"skill": "skills"})
    both = acc.merge(loss[["checkpoint_id", "skills", "nats_per_token"]], on=["checkpoint_id", "skills"])
    on = both[both["accuracy"] >= 0.5]["nats_per_token"].max()
    off = both[both["accuracy"] < 0.5]["nats_per_token"].min()
    n_skills, n_ck = both["skills"].nunique(), both["checkpoint_id"].nunique()
    head = (f"- **Per-skill loss** (cross-entropy on a skill's own gold answers, {n_skills} skills x {n_ck} "
            f"checkpoints, {per_skill} k = 1 items per skill): ")
    if on < off:  # every checkpoint-skill with accuracy >= 0.5 has a lower answer loss than every one below 0.5
        return (head + f"the switch is the same for all skills: k = 1 exact match is at least 0.5 whenever the "
                f"answer loss is below {off:.2f} nats/token and below 0.5 whenever it is above {on:.2f}.")
    return (head + f"no single answer loss separates the skills that work from those that do not: k = 1 exact match "
            f"is at least 0.5 at answer losses up to {on:.2f} nats/token and below 0.5 at losses down to {off:.2f}"
            + (" (with so few items per skill, a per-skill accuracy is coarse)." if per_skill < 10 else "."))


def generalization(analyses: dict) -> list[str]:
    sh = analyses["seen_heldout"]
    top = (f"at k = {sh['largest_trained_k']}, the largest trained k{{only}}, the mean seen - held-out gap is "
           f"{_f(sh['mean_gap_largest_k'], 3)} ({sh['n_cells_ci_excludes_0_largest_k']} of "
           f"{sh['n_cells_largest_k']} cell intervals exclude 0)")
    if sh.get("caveat"):
        return [f"- **Held-out tuples**: {top.format(only=' and the only one whose held-out tuples were never together in a training piece')}. "
                f"Over all k the mean gap is {_f(sh['mean_gap'], 3)}, but held-out pairs and triples occur inside "
                "seen larger training pieces, so that is not evidence of generalization to unseen combinations."]
    return [f"- **Held-out tuples** (no held-out tuple lies inside a seen larger one: every k compares combinations "
            f"never trained together): {top.format(only='')}; over all k the mean gap is {_f(sh['mean_gap'], 3)} "
            f"({sh['n_cells_ci_excludes_0']} of {sh['n_cells']} cell intervals exclude 0)."]


def forecast(analyses: dict) -> list[str]:
    cov = analyses["competence_fits"]["forecast_coverage_by_form"]
    true = _true_form_coverage()
    return ["- **Forecast** of the 2 lowest-loss checkpoints from the others (95% cluster-bootstrap prediction "
            "intervals, exact match): share inside, per form: "
            + ", ".join(f"{f} {v:.2f}" for f, v in cov.items()) + ". At this suite's design the true form covers "
            f"{true['k 1-4']:.2f} at the trained k, {true['k 5-8']:.2f} beyond them and {true['k 1-8 pooled']:.2f} "
            "pooled as here (calibration study), so " + _forecast_reading(cov, true["k 1-8 pooled"])]


def _true_form_coverage() -> dict[str, float]:
    """Coverage of the true form's forecast intervals at the v2 design, by k span, from calibration.json."""
    rows = json.loads((ROOT / "benchmarks" / "results" / "calibration.json").read_text())["rows"]
    out = {}
    for r in rows:
        if r["procedure"].startswith("forecast prediction interval (gompertz") and "v2 suite" in r["scenario"]:
            out[next(span for span in ("k 1-8 pooled", "k 1-4", "k 5-8") if span in r["scenario"])] = r["estimate"]
    return out


def _forecast_reading(cov: dict, true: float) -> str:
    """Which forms cover within 0.1 of what the true form covers, read from the coverage."""
    good = [f for f, v in cov.items() if v >= true - 0.1]
    if not good:
        return f"none of the forms comes within 0.1 of the true form's {true:.2f}."
    return f"{' and '.join(good)} come{'s' if len(good) == 1 else ''} within 0.1 of the true form's {true:.2f}."


def _untestable(entry: dict | None, name: str) -> str | None:
    """"not testable on this run: <reason>" when the analysis did not run (or the run predates it), else None."""
    if not entry:
        return f"not testable on this run: its analysis.json predates the {name} analysis (rerun `emergence analyze`)"
    if entry.get("status") != "ok":
        reason = str(entry.get("reason") or "no reason recorded")
        return reason if reason.startswith("not ") else f"not testable on this run: {reason}"
    return None


def beyond(analyses: dict) -> list[str]:
    """One bullet each: the slingshot test, the in-context gain on unseen tuples, format vs skill failures."""
    sl, sh, fk = (analyses.get(n) for n in ("slingshot", "shots", "failure_kinds"))
    why = _untestable(sl, "slingshot")
    tests = "; ".join(f"{t['mode']} k = {t['k']} vs 2k = {t['k2']}: {_ci(t, 'mean_diff')}, {t['verdict']}"
                      + (f" (format failures: {_f(t['format_share_2k'])} of the 2k failures)"
                         if t.get("format_share_2k") is not None else "")
                      for t in (sl or {}).get("tests", []) if t.get("reason") is None)
    lines = ["- **Slingshot** (held-out tuples: q_2k at excess loss delta minus the k-curve at 2 delta, mean over "
             "checkpoints, 95% cluster-bootstrap interval; calibrated size and power in the calibration table): "
             + (why if why else tests) + "."]
    why = _untestable(sh, "shots")
    trend = "; ".join(f"{t['mode']} k = {t['k']}, {t['step']} examples: mean gain {_ci(t, 'mean_gain')}, slope on "
                      f"loss {_ci(t, 'slope')}" for t in (sh or {}).get("trend", []))
    lines.append("- **In-context examples** on held-out tuples (gain in chance-corrected exact match per added "
                 "example; a negative slope means lower-loss checkpoints gain more): " + (why if why else trend) + ".")
    why = _untestable(fk, "failure-kinds")
    shares = "; ".join(f"{r['mode']} k = {r['k']}: format {_f(r['share_format'])}, skill {_f(r['share_skill'])}"
                       for r in (fk or {}).get("by_mode_k", []))
    lines.append("- **Format or skill failures** (share of all composite items, pooled over checkpoints and "
                 "splits): " + (why if why else shares) + ".")
    return lines


def main() -> None:
    run = Path(sys.argv[1])
    from readme_family_table import tables as family_tables  # this script's folder is on sys.path

    summary, tables, ck = load(run)
    largest = str(ck.loc[ck["params"].idxmax(), "size"])  # the size the second family table follows
    print(family_tables(run, size=largest) + "\n")  # the README's two family tables come first
    analyses = summary["analyses"]
    lines = [f"What these numbers say (run `{summary['run_id']}`; every number below is printed by `emergence run` "
             f"then `python benchmarks/readme_findings.py results/{summary['run_id']}`; how far each test can be "
             "trusted is in \"How far to trust the verdicts\"):", cross_entropy(ck)]
    lines += emergence(tables, ck, analyses) + [skill_loss(run, tables)] + theory(tables, analyses, ck.set_index("checkpoint_id")["label"], ck.set_index("checkpoint_id")["loss"]) + generalization(analyses) + beyond(analyses) + forecast(analyses)
    import textwrap

    print("\n".join(textwrap.fill(line, width=100, subsequent_indent="  " if line.startswith("- ") else "",
                                   break_on_hyphens=False) for line in lines))


if __name__ == "__main__":
    main()
