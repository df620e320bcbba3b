"""Figures of the theories' predictions: product rule, Arora-Goyal failure law and k-tuple rule, largest composable k.

Same contract as `plots`: `ReportData` in, a `Figure` out, a "not enough data" panel instead of an error.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from harness.report.canvas import (LOSS_REVERSED, MODE_MARKERS, empty_figure, finite, k_colors, log_scale,
                                   new_figure, note, numeric, yerr)
from harness.report.data import ReportData


def plot_product_rule(data: ReportData) -> Figure:
    """Observed vs product-rule-predicted composite competence, one point per (checkpoint, mode, k)."""
    title = "Product rule: observed vs predicted competence"
    table = data.table("product_rule")
    obs, pred = numeric(table, "observed"), numeric(table, "predicted")
    ok = finite(obs, pred)
    if not ok.any():
        return empty_figure(title, data.reason("product_rule", "no composite cell with a prediction"))
    fig, axes = new_figure(height=5.2)
    ax = axes[0, 0]
    colors = k_colors(table["k"].astype(int))
    for (mode, k), rows in table[ok].groupby(["mode", "k"]):
        o, p = numeric(rows, "observed"), numeric(rows, "predicted")
        ax.errorbar(p, o, yerr=yerr(o, numeric(rows, "observed_lo"), numeric(rows, "observed_hi")),
                    xerr=yerr(p, numeric(rows, "predicted_lo"), numeric(rows, "predicted_hi")),
                    fmt=MODE_MARKERS.get(str(mode), "o"), color=colors[int(k)], ms=5, capsize=2, alpha=0.85,
                    label=f"{mode}, k={int(k)}")
    lim = (min(-0.02, np.nanmin(np.r_[obs[ok], pred[ok]])), max(1.02, np.nanmax(np.r_[obs[ok], pred[ok]])))
    ax.plot(lim, lim, color="grey", ls="--", lw=1, label="observed = predicted")
    ax.set(xlim=lim, ylim=lim, aspect="equal", xlabel="predicted: mean over items of ∏ single-skill competence",
           ylabel="observed composite competence", title=title)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    return fig


def plot_ag(data: ReportData) -> Figure:
    """Arora-Goyal: single-skill failure vs excess loss with f = c δ^b, and composite failure vs k·f₁."""
    title = "Arora–Goyal predictions"
    fail, ktuple = data.table("ag_failure"), data.table("ag_ktuple")
    d, f = numeric(fail, "excess_loss"), numeric(fail, "failure")
    ok = finite(d, f) & (np.nan_to_num(d) > 0)
    if not ok.any() and ktuple.empty:
        return empty_figure(title, data.reason("ag_failure", "no single-skill failure with an excess loss"))
    fig, axes = new_figure(1, 2, height=4.4)
    ax = axes[0, 0]
    if ok.any():
        order = np.argsort(d[ok])
        ax.errorbar(d[ok], f[ok], yerr=yerr(f[ok], numeric(fail, "failure_lo")[ok], numeric(fail, "failure_hi")[ok]),
                    fmt="o", color="black", capsize=2, label="observed (k = 1)")
        for col, style in (("fitted", "-"), ("calibrated", "--")):
            ax.plot(d[ok][order], numeric(fail, col)[ok][order], style, label=f"{col} f = c δ^b")
        log_scale(ax, "x")
        log_scale(ax, "y")
        ax.invert_xaxis()
        ax.legend(fontsize=8)
    else:
        note(ax, "no single-skill failure with an excess loss")
    ax.set(xlabel=f"excess loss δ (nats/token, log; {LOSS_REVERSED})", ylabel="single-skill failure f₁ (log)",
           title="(a) failure law")
    _ktuple_panel(axes[0, 1], ktuple)
    return fig


def _ktuple_panel(ax, ktuple: pd.DataFrame) -> None:
    x, y = numeric(ktuple, "union"), numeric(ktuple, "observed")
    ok = finite(x, y)
    if ok.any():
        colors = k_colors(ktuple["k"].astype(int))
        for (mode, k), rows in ktuple[ok].groupby(["mode", "k"]):
            o = numeric(rows, "observed")
            ax.errorbar(numeric(rows, "union"), o, yerr=yerr(o, numeric(rows, "observed_lo"), numeric(rows, "observed_hi")),
                        fmt=MODE_MARKERS.get(str(mode), "o"), color=colors[int(k)], ms=4, capsize=2,
                        label=f"{mode}, k={int(k)}")
        ax.plot((0, 1), (0, 1), color="grey", ls="--", lw=1, label="bound: observed ≤ min(1, k·f₁)")
        ax.legend(fontsize=7, ncol=2)
    else:
        note(ax, "no composite cell with a single-skill failure")
    ax.set(xlabel="union bound min(1, k·f₁)", ylabel="observed composite failure", title="(b) k-tuple rule")


def plot_composable(data: ReportData) -> Figure:
    """Largest composable k* (fitted) against excess loss per mode."""
    level = data.table("composable_k")["level"].dropna()
    title = f"Largest composable k at competence {level.iloc[0]:.2g}" if len(level) else "Largest composable k"
    table = data.table("composable_k")
    x, y = numeric(table, "excess_loss"), numeric(table, "k_star_fit")
    ok = finite(x, y) & (np.nan_to_num(x) > 0)
    if not ok.any():
        return empty_figure(title, data.reason("composable_k", "k* could not be estimated on any checkpoint"))
    fig, axes = new_figure(height=4.0)
    ax = axes[0, 0]
    slopes = data.table("composable_scaling").set_index("mode") if len(data.table("composable_scaling")) else None
    for mode, rows in table[ok].groupby("mode"):
        slope = slopes.loc[mode, "slope"] if slopes is not None and mode in slopes.index else np.nan
        ax.plot(numeric(rows, "excess_loss"), numeric(rows, "k_star_fit"), marker=MODE_MARKERS.get(str(mode), "o"),
                label=f"{mode} (log-log slope {slope:.3g})" if np.isfinite(slope) else str(mode))
    n_censored = int(table["censored"].notna().sum()) if "censored" in table else 0
    log_scale(ax, "x")
    log_scale(ax, "y")
    ax.set(xlabel=f"excess loss δ (nats/token, log; {LOSS_REVERSED})",
           ylabel="k* (fitted, log)", title=f"{title} — {n_censored} censored cell(s) not shown")
    ax.invert_xaxis()
    ax.legend(fontsize=8)
    return fig
