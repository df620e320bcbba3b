"""Figures of the checks around emergence: the mirage view, per-skill accuracy and loss, seen vs held-out, paired
comparison.

Same contract as `plots`: `ReportData` in, a `Figure` out, a "not enough data" panel instead of an error.
"""
from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from harness.report.canvas import (LOSS_REVERSED, MODE_STYLES, empty_figure, finite, k_colors, legend_below,
                                   min_span, new_figure, note, numeric, ordered_colors, yerr)
from harness.report.data import ReportData, single_skill_accuracy

MIRAGE_METRICS: tuple[tuple[str, str], ...] = (
    ("exact_match", "exact match (fraction of items)"),
    ("partial_credit", "partial credit (fraction of parts)"),
    ("gold_logprob", "gold log-prob (nats per answer)"),
)


def plot_mirage(data: ReportData) -> Figure:
    """The same items scored by exact match, partial credit and gold log-prob, each against loss."""
    title = "Mirage check: one set of items, three metrics"
    comp = data.table("competence")
    comp = comp[comp["metric"].isin([m for m, _ in MIRAGE_METRICS])]
    loss = data.checkpoints.set_index("checkpoint_id")["loss"]
    x_all = comp["checkpoint_id"].astype(str).map(loss).to_numpy(float)
    if not finite(x_all, numeric(comp, "mean")).any():
        return empty_figure(title, "no exact-match, partial-credit or gold log-prob cell with a loss")
    fig, axes = new_figure(1, 3, height=4.4)
    colors = k_colors(comp["k"].astype(int))
    for ax, (metric, label) in zip(axes[0], MIRAGE_METRICS):
        rows = comp[comp["metric"] == metric]
        drawn = False
        for (mode, k), cell in rows.groupby(["mode", "k"]):
            x, y = cell["checkpoint_id"].astype(str).map(loss).to_numpy(float), numeric(cell, "mean")
            ok = finite(x, y)
            if ok.any():
                order = np.argsort(x[ok])
                ax.plot(x[ok][order], y[ok][order], MODE_STYLES.get(str(mode), "-"), marker="o", ms=3,
                        color=colors[int(k)], label=f"{mode}, k={int(k)}")
                drawn = True
        if not drawn:
            note(ax, f"{metric} not recorded")
        elif metric != "gold_logprob":
            min_span(ax, 0.1)
        ax.invert_xaxis()
        ax.set_title(metric, fontsize=10)
        ax.set_ylabel(label, fontsize=8)
        ax.set_xlabel(f"loss (nats/token; {LOSS_REVERSED})", fontsize=7)
    handles, labels = next(((h, l) for h, l in (a.get_legend_handles_labels() for a in axes[0]) if h), ([], []))
    legend_below(fig, handles, labels, 7, 7)
    return fig


def plot_skills(data: ReportData) -> Figure:
    """Heat map of single-skill accuracy: skills x checkpoints ordered from highest to lowest loss."""
    title = f"Single-skill accuracy ({data.metric}, k = 1)"
    acc = single_skill_accuracy(data.records, data.metric)
    if acc.empty:
        return empty_figure(title, "no k = 1 items scored with this metric")
    order = [c for c in data.order() if c in acc.columns] + [c for c in acc.columns if c not in data.order()]
    acc = acc.reindex(columns=order)
    acc = acc.loc[acc.mean(axis=1).sort_values(ascending=False, na_position="last").index]
    fig, axes = new_figure(height=min(1.8 + 0.32 * len(acc), 12))
    ax = axes[0, 0]
    cmap = colormaps["viridis"].with_extremes(bad="#d9d9d9")
    image = ax.imshow(np.ma.masked_invalid(acc.to_numpy(float)), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    if acc.size <= 300:
        for (i, j), v in np.ndenumerate(acc.to_numpy(float)):
            ax.text(j, i, "—" if not np.isfinite(v) else f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if np.isfinite(v) and v < 0.6 else "black")
    ax.set_xticks(range(acc.shape[1]), [data.label(c) for c in acc.columns], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(acc.shape[0]), [str(s) for s in acc.index], fontsize=8)
    ax.set_xlabel("checkpoint (highest loss left → lowest loss right)")
    ax.set_ylabel("skill")
    ax.set_title(f"{title}; grey = every item failed")
    fig.colorbar(image, ax=ax, label="accuracy (fraction of items)", shrink=0.9)
    return fig


def plot_skill_loss(data: ReportData) -> Figure:
    """Each skill's own cross-entropy (gold answer tokens of its k = 1 items) against the checkpoint's loss,
    and its k = 1 accuracy against that per-skill loss."""
    title = "Per-skill loss"
    loss_table = data.table("per_skill_loss")
    acc = single_skill_accuracy(data.records, data.metric)
    if loss_table.empty or not np.isfinite(numeric(loss_table, "nats_per_token")).any():
        return empty_figure(title, "no gold log-prob records of single-skill items")
    loss = data.checkpoints.set_index("checkpoint_id")["loss"]
    frame = loss_table.assign(checkpoint_id=loss_table["checkpoint_id"].astype(str))
    frame["checkpoint_loss"] = frame["checkpoint_id"].map(loss)
    frame["accuracy"] = [acc.at[s, c] if s in acc.index and c in acc.columns else np.nan
                         for s, c in zip(frame["skill"], frame["checkpoint_id"])]
    skills = frame.groupby("skill")["nats_per_token"].mean().sort_values(ascending=False).index
    colors = dict(zip(skills, ordered_colors(len(skills))))
    fig, axes = new_figure(1, 2, height=4.4)
    for skill, rows in frame.groupby("skill"):
        rows = rows.sort_values("checkpoint_loss")
        x, y, a = numeric(rows, "checkpoint_loss"), numeric(rows, "nats_per_token"), numeric(rows, "accuracy")
        if finite(x, y).any():
            axes[0, 0].plot(x[finite(x, y)], y[finite(x, y)], "o", ms=3, color=colors[skill], label=skill)
        if finite(y, a).any():
            axes[0, 1].plot(y[finite(y, a)], a[finite(y, a)], "o", ms=3, color=colors[skill], label=skill)
    axes[0, 0].set_xlabel(f"checkpoint loss (nats/token; {LOSS_REVERSED})", fontsize=7)
    axes[0, 0].set_ylabel("skill loss (nats per answer token, k = 1)", fontsize=8)
    axes[0, 1].set_xlabel(f"skill loss (nats per answer token; {LOSS_REVERSED})", fontsize=7)
    axes[0, 1].set_ylabel(f"k = 1 {data.metric} of the skill", fontsize=8)
    for ax in axes[0]:
        ax.invert_xaxis()
    if not finite(numeric(frame, "accuracy")).any():
        note(axes[0, 1], f"no k = 1 {data.metric} records")
    axes[0, 0].set_title("each skill's loss falls with the model's", fontsize=10)
    axes[0, 1].set_title("each skill emerges as its own loss falls", fontsize=10)
    if len(skills) <= 16:
        legend_below(fig, *axes[0, 0].get_legend_handles_labels(), 8, 7)
    return fig


def plot_seen_heldout(data: ReportData) -> Figure:
    """Seen minus held-out competence per k with its interval, one colour per checkpoint."""
    title = f"Seen − held-out competence gap ({data.metric})"
    table = data.table("seen_heldout")
    table = table[table["metric"] == data.metric]
    if not np.isfinite(numeric(table, "gap")).any():
        return empty_figure(title, data.analysis("seen_heldout").get("reason") or "needs seen and held-out items")
    modes = sorted(table["mode"].astype(str).unique())
    fig, axes = new_figure(1, len(modes), height=4.2, sharey=True)
    ids = [c for c in data.order() if c in set(table["checkpoint_id"].astype(str))]
    colors = dict(zip(ids, ordered_colors(len(ids))))
    width = 0.6 / max(len(ids), 1)
    for ax, mode in zip(axes[0], modes):
        rows = table[table["mode"] == mode]
        for i, cid in enumerate(ids):
            cell = rows[rows["checkpoint_id"].astype(str) == cid]
            x, g = numeric(cell, "k") + (i - (len(ids) - 1) / 2) * width, numeric(cell, "gap")
            ok = finite(x, g)
            ax.errorbar(x[ok], g[ok], yerr=yerr(g[ok], numeric(cell, "gap_lo")[ok], numeric(cell, "gap_hi")[ok]),
                        fmt="o", ms=4, capsize=2, color=colors[cid], label=data.label(cid))
        ax.axhline(0, color="grey", lw=1)
        min_span(ax, 0.1)
        ax.set_xticks(sorted(set(numeric(rows, "k")[np.isfinite(numeric(rows, "k"))].astype(int))))
        ax.set(xlabel="k (skills per item)", title=f"mode: {mode}")
    axes[0, 0].set_ylabel("seen − held-out competence (95% interval)")
    legend_below(fig, *axes[0, 0].get_legend_handles_labels(), 6, 7, title="checkpoint (highest → lowest loss)")
    return fig


def plot_paired(data: ReportData) -> Figure:
    """Forest plot of mean(A) − mean(B) per (mode, k) for the report's pair, with Holm-adjusted clustered p-values."""
    pair = data.pair
    diff = numeric(pair, "diff")
    if pair.empty or not np.isfinite(diff).any():
        reason = str(pair["reason"].dropna().iloc[0]) if "reason" in pair and pair["reason"].notna().any() else ""
        return empty_figure("Paired comparison", reason or data.pair_note or "no pair of checkpoints to compare")
    a, b = data.label(pair["checkpoint_a"].iloc[0]), data.label(pair["checkpoint_b"].iloc[0])
    rows = pair[np.isfinite(diff)].reset_index(drop=True)
    fig, axes = new_figure(height=1.6 + 0.34 * len(rows))
    ax = axes[0, 0]
    y = np.arange(len(rows))[::-1]
    d = numeric(rows, "diff")
    err = yerr(d, numeric(rows, "diff_lo"), numeric(rows, "diff_hi"))
    ax.errorbar(d, y, xerr=err, fmt="o", color="black", capsize=3)
    ax.axvline(0, color="grey", lw=1)
    min_span(ax, 0.1, "x")
    ax.set_yticks(y, [f"{m}, k={int(k)}" for m, k in zip(rows["mode"], rows["k"])], fontsize=8)
    for yi, r in zip(y, rows.to_dict("records")):
        p = r.get("p_adjusted")
        text = f"Holm p={p:.2g}" if isinstance(p, float) and np.isfinite(p) else "p —"
        ax.annotate(f"{text} · A only {_count(r.get('only_a'))} / B only {_count(r.get('only_b'))}",
                    (1.01, yi), xycoords=("axes fraction", "data"), fontsize=7, va="center")
    ax.set_xlabel(f"mean(A) − mean(B), {rows['metric'].iloc[0]} (95% paired cluster-bootstrap interval)")
    ax.set_title(f"A = {a} vs B = {b}")
    return fig


def _count(value) -> str:
    return str(int(value)) if isinstance(value, (int, float, np.integer, np.floating)) and np.isfinite(value) else "—"
