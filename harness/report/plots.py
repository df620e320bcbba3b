"""The report's figures, one function each: `ReportData` in, a matplotlib `Figure` out.

No function raises on empty or all-NaN input: it returns a "not enough data: <reason>" panel
instead. Loss is per token in nats. Loss and competence curves live here, the theories' checks
(product rule, Arora-Goyal, composable k) in `plots_theory`, the checks of emergence (mirage,
skills, seen/held-out, paired) in `plots_checks`; `FIGURES` lists every figure in report order.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from harness.report.canvas import (LOSS_REVERSED, empty_figure, finite, k_colors, legend_below, log_scale, new_figure,
                                   note, numeric, wrap, yerr)
from harness.records import SINGLE_MODE
from harness.report.data import ReportData
from harness.report.history_view import plot_history
from harness.report.plots_checks import plot_mirage, plot_paired, plot_seen_heldout, plot_skill_loss, plot_skills
from harness.report.plots_theory import plot_ag, plot_composable, plot_product_rule


def plot_scaling(data: ReportData) -> Figure:
    """Loss vs parameters with the fitted L(N) laws, L(N, D) predictions and the entropy floor."""
    title = "Loss vs parameters"
    ck = data.checkpoints
    n_col = data.analysis("scaling").get("N_column") or "params"
    n, loss = numeric(ck, n_col), numeric(ck, "loss")
    ok = finite(n, loss) & (np.nan_to_num(n) > 0)
    if not ok.any():
        return empty_figure(title, "no checkpoint has both a parameter count and a loss")
    fig, axes = new_figure(height=4.6)
    ax = axes[0, 0]
    ax.scatter(n[ok], loss[ok], color="black", zorder=3, label="checkpoints (held-out text)")
    if ok.sum() <= 12:
        for x, y, lab in zip(n[ok], loss[ok], ck.loc[ok, "label"]):
            ax.annotate(str(lab), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    grid = np.geomspace(n[ok].min() / 1.5, n[ok].max() * 1.5, 120)
    fits = data.table("scaling")
    for row in fits.to_dict("records"):
        E, A, alpha = (pd.to_numeric(row.get(c), errors="coerce") for c in ("E", "A", "alpha"))
        if not np.all(np.isfinite([E, A, alpha])):
            continue
        style = "-" if row.get("variant") == "free_E" else "--"
        label = f"L({row.get('form')}) fit, {row.get('variant')}: E={E:.3g}, α={alpha:.3g}"
        if row.get("form") == "N":
            ax.plot(grid, E + A * grid ** -alpha, style, label=label)
        else:
            B, beta = (pd.to_numeric(row.get(c), errors="coerce") for c in ("B", "beta"))
            d = numeric(ck, "tokens_seen")
            pred = E + A * n ** -alpha + B * d ** -beta
            good = ok & np.isfinite(pred)
            ax.scatter(n[good], pred[good], marker="x" if style == "-" else "+", s=50, label=label)
    floors = numeric(ck, "entropy_floor")
    if len(floors) and np.isfinite(floors).all() and np.ptp(floors) == 0:
        ax.axhline(floors[0], color="grey", ls=":", label=f"entropy floor (exact) = {floors[0]:.3g}")
    if fits.empty or not numeric(fits, "E").size or not np.isfinite(numeric(fits, "E")).any():
        note(ax, f"no scaling-law fit: {data.reason('scaling', 'not fitted')}")
    log_scale(ax, "x")
    ax.set_xlabel(f"parameters N ({n_col}, log scale)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    return fig


def plot_excess(data: ReportData) -> Figure:
    """Excess loss delta = L - E per checkpoint against parameters, with its interval."""
    title = "Excess loss δ = L − E"
    ck = data.checkpoints
    n_col = data.analysis("scaling").get("N_column") or "params"
    n, ex = numeric(ck, n_col), numeric(ck, "excess_loss")
    ok = finite(n, ex) & (np.nan_to_num(n) > 0) & (np.nan_to_num(ex) > 0)
    if not ok.any():
        return empty_figure(title, data.reason("excess_loss", "no checkpoint has a positive excess loss"))
    fig, axes = new_figure(height=3.8)
    ax = axes[0, 0]
    err = yerr(ex[ok], numeric(ck, "excess_lo")[ok], numeric(ck, "excess_hi")[ok])
    ax.errorbar(n[ok], ex[ok], yerr=err, fmt="o", color="black", capsize=3, label="checkpoints (95% interval)")
    source = data.analysis("excess_loss").get("source", "unknown")
    log_scale(ax, "x")
    log_scale(ax, "y")
    ax.set(xlabel=f"parameters N ({n_col}, log scale)", ylabel="excess loss δ (nats/token, log)",
           title=f"{title} (E from {source})")
    ax.legend(fontsize=8)
    return fig


def _x_axis(data: ReportData) -> tuple[str, str]:
    ex = numeric(data.checkpoints, "excess_loss")
    if np.isfinite(ex).sum() >= 2:
        return "excess_loss", f"excess loss δ (nats/token, log; {LOSS_REVERSED})"
    return "loss", f"loss (nats/token; {LOSS_REVERSED})"


def _cells(data: ReportData, mode: str) -> pd.DataFrame:
    """Competence rows of the primary metric for one composite mode plus the k = 1 single cells."""
    comp = data.table("competence")
    comp = comp[comp["metric"] == data.metric]
    keep = (comp["mode"] == mode) | ((comp["mode"] == SINGLE_MODE) & (comp["k"] == 1))
    rows = comp[keep].copy()
    rows["checkpoint_id"] = rows["checkpoint_id"].astype(str)
    rows["k"] = pd.to_numeric(rows["k"], errors="coerce")
    return rows


def _composite_modes(data: ReportData) -> list[str]:
    comp = data.table("competence")
    modes = sorted({str(m) for m in comp["mode"].dropna()} - {SINGLE_MODE})
    return modes or ([SINGLE_MODE] if len(comp) else [])


def _at_checkpoints(data: ReportData, frame: pd.DataFrame, x_col: str) -> np.ndarray:
    xs = data.checkpoints.set_index("checkpoint_id")[x_col]
    return frame["checkpoint_id"].astype(str).map(xs).to_numpy(float)


def _best_curves(data: ReportData, mode: str, x_col: str) -> dict[int, pd.DataFrame]:
    fits, curves = data.table("competence_fits"), data.table("competence_curves")
    best = fits[(fits["metric"] == data.metric) & (pd.to_numeric(fits["delta_aic"], errors="coerce") == 0)]
    E = numeric(data.checkpoints, "E")
    E = E[np.isfinite(E)][0] if np.isfinite(E).any() else np.nan
    out = {}
    for row in best[(best["mode"] == mode) | (best["mode"] == SINGLE_MODE)].to_dict("records"):
        c = curves[(curves["mode"] == row["mode"]) & (curves["k"] == row["k"]) & (curves["metric"] == data.metric)
                   & (curves["form"] == row["form"])]
        x = numeric(c, "x")
        if len(c) and c["covariate"].iloc[0] != x_col:
            x = x - E if x_col == "excess_loss" else x + E
        out[int(row["k"])] = pd.DataFrame({"x": x, "y": numeric(c, "competence"), "form": row["form"]})
    return out


def _prediction(data: ReportData, name: str, mode: str, column: str, x_col: str,
                transform: Callable[[np.ndarray], np.ndarray] = lambda v: v) -> dict[int, tuple]:
    table = data.table(name)
    table = table[table["mode"] == mode]
    out = {}
    for k, rows in table.groupby("k"):
        x, y = _at_checkpoints(data, rows, x_col), transform(numeric(rows, column))
        ok = finite(x, y)
        order = np.argsort(x[ok])
        out[int(k)] = (x[ok][order], y[ok][order])
    return out


def plot_competence(data: ReportData) -> Figure:
    """Chance-corrected competence vs excess loss per k, fitted curves and both theories' predictions."""
    title = f"Competence vs excess loss ({data.metric}, chance-corrected)"
    modes = _composite_modes(data)
    if not modes:
        return empty_figure(title, data.reason("competence", "no competence cells"))
    x_col, x_label = _x_axis(data)
    fig, axes = new_figure(1, len(modes), height=4.8, sharey=True)
    colors = k_colors(pd.to_numeric(data.table("competence")["k"], errors="coerce").dropna().astype(int))
    for ax, mode in zip(axes[0], modes):
        rows = _cells(data, mode)
        rows = rows.assign(x=_at_checkpoints(data, rows, x_col))
        curves = _best_curves(data, mode, x_col)
        product = _prediction(data, "product_rule", mode, "predicted", x_col)
        ag = _prediction(data, "ag_ktuple", mode, "union", x_col, lambda v: 1.0 - v)
        drawn = False
        for k, cell in rows.groupby("k"):
            k = int(k)
            y, x = numeric(cell, "competence"), cell["x"].to_numpy(float)
            ok = finite(x, y)
            if not ok.any():
                continue
            drawn = True
            err = yerr(y[ok], numeric(cell, "competence_lo")[ok], numeric(cell, "competence_hi")[ok])
            ax.errorbar(x[ok], y[ok], yerr=err, fmt="o", color=colors[k], capsize=2, ms=4, label=f"k={k}")
            if k in curves:
                c = curves[k]
                ax.plot(c["x"], c["y"], "-", color=colors[k], lw=1.2, alpha=0.8)
            if k in product and k > 1:
                ax.plot(*product[k], ":", color=colors[k], lw=1.6)
            if k in ag and k > 1:
                ax.plot(*ag[k], "--", color=colors[k], lw=1.2)
        if not drawn:
            note(ax, f"no scored cell for mode {mode}")
        if x_col == "excess_loss" and drawn:
            log_scale(ax, "x")
        ax.invert_xaxis()
        ax.set_title(f"mode: {mode}")
        ax.set_xlabel(x_label, fontsize=8)
    axes[0, 0].set_ylabel("competence (chance-corrected)")
    _style_legend(fig, axes[0, 0])
    return fig


def _style_legend(fig: Figure, ax) -> None:
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    extra = [Line2D([], [], color="grey", ls="-", label="fitted curve (best AIC)"),
             Line2D([], [], color="grey", ls=":", lw=1.6, label="product rule"),
             Line2D([], [], color="grey", ls="--", label="A&G k-tuple: 1 − min(1, k·f₁)")]
    legend_below(fig, handles + extra, labels + [h.get_label() for h in extra], 6, 8)


def plot_collapse(data: ReportData) -> Figure:
    """Chance-corrected competence against k·δ per composite mode, with the free collapse fit per k."""
    title = "Collapse test: competence vs k·δ"
    modes = [m for m in _composite_modes(data) if m != SINGLE_MODE]
    if not modes or not np.isfinite(numeric(data.checkpoints, "excess_loss")).any():
        return empty_figure(title, data.reason("collapse", "needs composite items and a positive excess loss"))
    fig, axes = new_figure(1, len(modes), height=4.6, sharey=True)
    colors = k_colors(pd.to_numeric(data.table("competence")["k"], errors="coerce").dropna().astype(int))
    fits = data.table("collapse").set_index("mode") if len(data.table("collapse")) else pd.DataFrame()
    for ax, mode in zip(axes[0], modes):
        rows = _cells(data, mode)
        delta = _at_checkpoints(data, rows, "excess_loss")
        x, y = rows["k"].to_numpy(float) * delta, numeric(rows, "competence")
        ok = finite(x, y) & (np.nan_to_num(delta) > 0)
        for k in sorted(set(rows["k"][ok].astype(int))):
            sel = ok & (rows["k"].to_numpy() == k)
            ax.scatter(x[sel], y[sel], color=colors[k], s=22, label=f"k={k}")
            _collapse_curve(ax, fits, mode, k, delta[sel], colors[k])
        if not ok.any():
            note(ax, "no cell with counts and a positive excess loss")
        verdict = fits.loc[mode, "verdict"] if mode in fits.index else "not tested"
        ax.set_title(wrap(f"{mode}: {verdict if isinstance(verdict, str) else 'not tested'}", 48), fontsize=9)
        if ok.any():
            log_scale(ax, "x")
        ax.invert_xaxis()
        ax.set_xlabel(f"k · δ (nats/token, log; {LOSS_REVERSED})", fontsize=8)
    axes[0, 0].set_ylabel("competence (chance-corrected)")
    legend_below(fig, *axes[0, 0].get_legend_handles_labels(), 8, 8,
                 title="points: observed; lines: free fit q = exp(−λ k^a δ^b)")
    return fig


def _collapse_curve(ax, fits: pd.DataFrame, mode: str, k: int, delta: np.ndarray, color) -> None:
    if mode not in fits.index or len(delta) == 0:
        return
    lam, a, b = (pd.to_numeric(fits.loc[mode, c], errors="coerce") for c in ("log_lambda", "a", "b"))
    if not np.all(np.isfinite([lam, a, b])):
        return
    grid = np.geomspace(delta.min(), delta.max(), 50) if delta.min() < delta.max() else delta
    ax.plot(k * grid, np.exp(-np.exp(lam) * k ** a * grid ** b), color=color, lw=1)


FIGURES: tuple[tuple[str, Callable[[ReportData], Figure]], ...] = (
    ("scaling", plot_scaling), ("excess_loss", plot_excess), ("competence", plot_competence),
    ("skills", plot_skills), ("skill_loss", plot_skill_loss), ("product_rule", plot_product_rule), ("arora_goyal", plot_ag),
    ("collapse", plot_collapse), ("composable_k", plot_composable), ("mirage", plot_mirage),
    ("seen_heldout", plot_seen_heldout), ("paired", plot_paired), ("history", plot_history),
)
"""(name, function) of every figure; the name is the PNG's file stem and the section it belongs to."""
