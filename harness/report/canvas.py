"""Figure plumbing for the report: Agg figures without pyplot state, a "not enough data" panel, PNG bytes, colours.

Figures are built from `matplotlib.figure.Figure` with an Agg canvas, so nothing touches pyplot's
global state or needs a display.
"""
from __future__ import annotations

import io
import textwrap
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.records import SINGLE_MODE

WIDTH_IN = 9.0
"""Figure width in inches; at `DPI` this is 900 px, the report's column width."""
DPI = 100
MODE_STYLES: dict[str, str] = {SINGLE_MODE: "-", "chain": "-", "conjunction": "--", "direct": ":"}
MODE_MARKERS: dict[str, str] = {SINGLE_MODE: "o", "chain": "s", "conjunction": "^", "direct": "D"}
LOSS_REVERSED = "axis reversed: better models to the right"


def new_figure(nrows: int = 1, ncols: int = 1, height: float = 4.2, **kw) -> tuple[Figure, np.ndarray]:
    """A figure 900 px wide with an Agg canvas and a 2-d array of axes."""
    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def empty_figure(title: str, reason: str) -> Figure:
    """A panel saying why a figure could not be drawn."""
    fig = Figure(figsize=(WIDTH_IN, 1.6), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    wrapped = "\n".join(textwrap.wrap(f"not enough data: {reason}", 110))
    ax.text(0.5, 0.68, title, ha="center", va="center", fontsize=12, weight="bold")
    ax.text(0.5, 0.35, wrapped, ha="center", va="center", fontsize=10, color="#8a2d00")
    return fig


def to_png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def k_colors(ks: Iterable[int]) -> dict[int, tuple]:
    """One colour per k, from light (small k) to dark (large k) on a sequential map."""
    from matplotlib import colormaps

    ks = sorted({int(k) for k in ks})
    cmap = colormaps["viridis"]
    if len(ks) == 1:
        return {ks[0]: cmap(0.35)}
    return {k: cmap(0.9 * i / (len(ks) - 1)) for i, k in enumerate(ks)}


def ordered_colors(n: int) -> list[tuple]:
    """`n` colours from light to dark (e.g. checkpoints from worst to best loss)."""
    from matplotlib import colormaps

    cmap = colormaps["plasma"]
    return [cmap(0.85 * i / max(n - 1, 1)) for i in range(n)]


def numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column as floats (non-numbers and a missing column as NaN)."""
    if column not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(float)


def finite(*arrays: Sequence[float]) -> np.ndarray:
    """Mask of positions where every array is finite."""
    mask = np.ones(len(arrays[0]), bool)
    for a in arrays:
        mask &= np.isfinite(np.asarray(a, float))
    return mask


def yerr(value, lo, hi) -> np.ndarray:
    """Asymmetric error bars (2 x n, non-negative; 0 where an end is missing)."""
    value, lo, hi = (np.asarray(a, float) for a in (value, lo, hi))
    low = np.where(np.isfinite(lo), value - lo, 0.0)
    high = np.where(np.isfinite(hi), hi - value, 0.0)
    return np.clip(np.vstack([low, high]), 0.0, None)


def note(ax: Axes, message: str) -> None:
    """Writes a short message in the middle of an axis (an empty facet)."""
    ax.text(0.5, 0.5, "\n".join(textwrap.wrap(message, 50)), ha="center", va="center", transform=ax.transAxes,
            fontsize=9, color="#8a2d00")


def legend_below(fig: Figure, handles: list, labels: list, max_columns: int, fontsize: float,
                 title: str | None = None) -> None:
    """A figure legend under the panels, at most `max_columns` wide; nothing when there is nothing to label."""
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(handles), max_columns),
                   fontsize=fontsize, title=title, title_fontsize=fontsize)


def wrap(title: str, width: int = 60) -> str:
    """A title wrapped onto several lines."""
    return "\n".join(textwrap.wrap(title, width))


def log_scale(ax: Axes, which: str = "x") -> None:
    """Log scale with plain-number tick labels; evenly spaced ticks when the data span less than a decade.

    Call after plotting, so that the data limits are known.
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    getattr(ax, f"set_{which}scale")("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    lo, hi = sorted(getattr(ax, f"get_{which}lim")())
    if lo > 0 and hi / lo < 100:
        ticks = [t for t in LogLocator(subs=(1.0, 2.0, 5.0)).tick_values(lo, hi) if lo <= t <= hi]
        if not 3 <= len(ticks) <= 7:
            ticks = [t for t in MaxNLocator(4).tick_values(lo, hi) if lo <= t <= hi]
        axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _: tick(v)))
    axis.set_minor_formatter(NullFormatter())


def tick(v: float) -> str:
    """A tick label: 3 significant digits, thousands as k, millions as M, billions as B."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


def min_span(ax: Axes, span: float, which: str = "y") -> None:
    """Widens an axis around its centre to at least `span` (so floating-point noise is not magnified)."""
    lo, hi = getattr(ax, f"get_{which}lim")()
    if abs(hi - lo) < span:
        mid = (lo + hi) / 2
        getattr(ax, f"set_{which}lim")(mid - span / 2, mid + span / 2)
