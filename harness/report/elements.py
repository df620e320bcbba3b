"""HTML building blocks of the report: escaped tables with footnoted reasons for missing values, figures, sections.

Every piece of text that comes from data goes through `html.escape`. A missing value is rendered
as a dash whose footnote (or tooltip) gives the reason, never as 0.
"""
from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.report.fmt import DASH, interval, is_missing, num

FULL_TABLE_CAP = 400
"""Rows of a tidy table shown inside its <details> element; the Parquet file has them all."""


@dataclass(frozen=True)
class Cell:
    """One table cell: a raw value (formatted to 3 significant digits) or text, and why it may be missing."""

    value: Any
    """The value; None/NaN renders as a dash."""
    reason: str | None = None
    """Why the value is missing (ignored when it is present)."""
    note: str | None = None
    """A footnote shown even when the value is present (e.g. why its interval is missing)."""


def esc(value: Any) -> str:
    """Escaped text of any value."""
    return html.escape(str(value), quote=True)


class _Notes:
    """Numbered, de-duplicated footnotes of one table."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def mark(self, reason: str) -> str:
        if reason not in self.items:
            self.items.append(reason)
        return f'<sup class="fn">{self.items.index(reason) + 1}</sup>'

    def html(self) -> str:
        if not self.items:
            return ""
        return '<ol class="notes">' + "".join(f"<li>{esc(r)}</li>" for r in self.items) + "</ol>"


def _cell(value: Any, key: str, row_reason: str | None, notes: _Notes | None) -> tuple[str, bool]:
    """(<td> html, whether the row reason was attached)."""
    reason = note = None
    if isinstance(value, Cell):
        value, reason, note = value.value, value.reason, value.note
    reason = None if is_missing(reason) else str(reason)
    note = None if is_missing(note) else str(note)
    attr = f' data-col="{esc(key)}"' if key else ""
    if not is_missing(value):
        shown = esc(value) if isinstance(value, str) else esc(num(value))
        mark = notes.mark(note) if note and notes is not None else ""
        return f"<td{attr}>{shown}{mark}</td>", False
    why = reason or row_reason
    if why and notes is not None:
        return f'<td{attr}><span class="na" title="{esc(why)}">{DASH}</span>{notes.mark(why)}</td>', why == row_reason
    title = f' title="{esc(why)}"' if why else ""
    return f'<td{attr}><span class="na"{title}>{DASH}</span></td>', False


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, keys: Sequence[str] | None = None,
          row_reasons: Sequence[str | None] | None = None, footnotes: bool = True, css: str = "") -> str:
    """An HTML table.

    Args:
        headers: column headings.
        rows: cell values (raw values, strings or `Cell`s), one sequence per row.
        keys: a `data-col` attribute per column (stable hooks for tests and styling).
        row_reasons: a reason per row, used for the row's missing cells (and shown once when none is missing).
        footnotes: number reasons as footnotes under the table; otherwise only as tooltips.
        css: extra class of the <table>.
    """
    if not rows:
        return '<p class="empty">None.</p>'
    keys = list(keys) if keys is not None else [""] * len(headers)
    notes = _Notes() if footnotes else None
    body = []
    for i, row in enumerate(rows):
        reason = row_reasons[i] if row_reasons is not None and not is_missing(row_reasons[i]) else None
        cells, used = [], False
        for value, key in zip(row, keys):
            td, attached = _cell(value, key, reason, notes)
            cells.append(td)
            used |= attached
        if reason and not used and notes is not None and cells:
            cells[0] = cells[0].replace("</td>", notes.mark(reason) + "</td>", 1)
        body.append("<tr>" + "".join(cells) + "</tr>")
    head = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr>"
    cls = f' class="{esc(css)}"' if css else ""
    foot = notes.html() if notes is not None else ""
    return f'<div class="scroll"><table{cls}><thead>{head}</thead><tbody>{"".join(body)}</tbody></table></div>{foot}'


def frame_table(frame: pd.DataFrame, labels: dict[str, str], *, cap: int = FULL_TABLE_CAP) -> str:
    """Every column of a tidy table, checkpoint ids shown as labels, reasons as tooltips."""
    if frame.empty:
        return '<p class="empty">The table is empty.</p>'
    shown = frame.head(cap)
    columns = list(shown.columns)
    rows = []
    for record in shown.to_dict("records"):
        rows.append([labels.get(str(record[c]), record[c]) if c.startswith("checkpoint") else record[c]
                     for c in columns])
    reasons = list(shown["reason"]) if "reason" in shown.columns else None
    more = f'<p class="more">{len(frame) - cap} more rows are in the Parquet file.</p>' if len(frame) > cap else ""
    return table(columns, rows, keys=columns, row_reasons=reasons, footnotes=False, css="full") + more


def ival(row: dict[str, Any], column: str, reason: str | None = None, ci_reason: str | None = None) -> Cell:
    """`value [lo, hi]` of `column` and its `_lo`/`_hi` columns in one cell.

    Args:
        row: a table row (or summary entry).
        column: name of the estimate.
        reason: why the estimate is missing.
        ci_reason: footnote when the estimate is present but its interval is not.
    """
    value, lo, hi = row.get(column), row.get(f"{column}_lo"), row.get(f"{column}_hi")
    if is_missing(value):
        return Cell(None, reason)
    no_ci = is_missing(lo) and is_missing(hi)
    return Cell(interval(value, lo, hi), note=ci_reason if no_ci and ci_reason else None)


def details(summary: str, body: str) -> str:
    """A collapsed block."""
    return f"<details><summary>{esc(summary)}</summary>{body}</details>"


def figure(name: str, png: bytes | None, caption: str) -> str:
    """A figure embedded as a base64 PNG data URI."""
    if not png:
        return f'<p class="empty">Figure {esc(name)} was not drawn.</p>'
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure id="fig-{esc(name)}"><img src="data:image/png;base64,{data}" alt="{esc(caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def section(sid: str, title: str, intro: str, *parts: str) -> str:
    """A report section with a stable id; `intro` is trusted HTML built from escaped pieces."""
    return f'<section id="{esc(sid)}"><h2>{esc(title)}</h2><p class="intro">{intro}</p>{"".join(parts)}</section>'


def status_line(entry: dict[str, Any]) -> str:
    """One line naming an analysis' status and, when it did not run, why."""
    status = entry.get("status", "not run")
    if status == "ok":
        return ""
    reason = entry.get("reason") or "no reason recorded"
    return f'<p class="status {esc(status)}">Analysis {esc(status)}: {esc(reason)}</p>'
