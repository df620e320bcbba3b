"""The monitoring trend of the report: mean score per k over the history of the run's results folder.

The history (`harness.gate.history`) lives next to the run (``results/history.sqlite``); the report shows it
when present: one line per k (and the mean over single skills), red triangles at the changes flagged after
Benjamini-Hochberg control, and a table of the flagged changes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from harness.report.canvas import empty_figure, k_colors, new_figure
from harness.report.data import ReportData
from harness.report.elements import esc, figure, section, table

NO_HISTORY = "no monitoring history next to this run; add runs with `emergence history add RUN`"


def load_history(run_dir: Path) -> dict[str, pd.DataFrame]:
    """``trend`` and ``changes`` of the history in the run's parent folder (empty dict when there is none)."""
    from harness.gate.history import changes, history_path, read_history, trend

    path = history_path(Path(run_dir).parent)
    if not path.exists():
        return {}
    history = read_history(path)
    return {"trend": trend(history), "changes": changes(history)}


def _by_k(trend: pd.DataFrame) -> pd.DataFrame:
    k = np.where(trend["scope"].str.startswith("k="), trend["scope"].str[2:], "1")
    return trend.assign(k=k.astype(int)).groupby(["seq", "label", "k"], as_index=False)["value"].mean()


def plot_history(data: ReportData) -> Figure:
    """Mean score per k across the checkpoints of the history, flagged drops marked."""
    if not data.history or data.history["trend"].empty:
        return empty_figure("Monitoring history", NO_HISTORY)
    trend, flagged = _by_k(data.history["trend"]), data.history["changes"]
    flagged = flagged[flagged["flagged"]]
    seqs = sorted(trend["seq"].unique())
    x = {s: i for i, s in enumerate(seqs)}
    fig, axes = new_figure(height=3.6)
    ax = axes[0, 0]
    for k, color in k_colors(sorted(trend["k"].unique())).items():
        rows = trend[trend["k"] == k]
        ax.plot([x[s] for s in rows["seq"]], rows["value"], "o-", color=color, label=f"k={k}", ms=4)
    drops = flagged[flagged["diff"] < 0]
    for seq in drops["seq"].unique():
        ax.axvline(x[seq], color="#c33", lw=0.8, ls=":")
        ax.plot(x[seq], 1.02, "v", color="#c33", ms=8, clip_on=False)
    labels = trend.drop_duplicates("seq").set_index("seq")["label"]
    ax.set_xticks(range(len(seqs)), [str(labels[s]) for s in seqs], rotation=30, ha="right", fontsize=7)
    ax.set_ylim(-0.02, 1.05)
    ax.set_ylabel(f"mean {data.metric}")
    ax.set_title("History (red: significant drop after Benjamini-Hochberg)", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    return fig


def history_section(data: ReportData, figs: dict[str, bytes]) -> str:
    """The trend figure and the flagged changes."""
    intro = ("Checkpoints appended with <code>emergence history add RUN</code>, in order. Each is compared with "
             "the previous one per skill (k = 1) and per k by the clustered paired test; changes whose "
             "Benjamini-Hochberg adjusted p-value is below 0.05 are flagged.")
    if not data.history:
        return section("history", "Monitoring history", intro, f'<p class="empty">{esc(NO_HISTORY)}</p>',
                       figure("history", figs.get("history"), "Mean score per k over the history"))
    hits = data.history["changes"]
    hits = hits[hits["flagged"]]
    rows = [[r["label"], r["scope"], f"{r['diff']:+.3f}", f"{r['p_bh']:.3g}", int(r["n_items"])]
            for r in hits.to_dict("records")]
    return section("history", "Monitoring history", intro,
                   figure("history", figs.get("history"), "Mean score per k over the history"),
                   table(["checkpoint", "scope", "change", "BH p", "items"], rows))
