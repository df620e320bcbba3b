"""The report document: one self-contained HTML page (inline CSS, figures as data URIs, no external URL).

`render_document` puts the headline box first, then one section per analysis in `SECTIONS` order.
"""
from __future__ import annotations

from collections.abc import Callable

from harness.report import sections as fit
from harness.report import sections_beyond as beyond
from harness.report import sections_checks as checks
from harness.report.data import ReportData
from harness.report.elements import esc
from harness.report.headline import headline
from harness.report.history_view import history_section

Section = Callable[[ReportData, dict[str, bytes]], str]
SECTIONS: tuple[tuple[str, str, Section], ...] = (
    ("scaling", "Scaling law", fit.scaling_section),
    ("excess_loss", "Excess loss", fit.excess_section),
    ("competence", "Competence vs loss", fit.competence_section),
    ("skills", "Single skills", fit.skills_section),
    ("product_rule", "Product rule", fit.product_section),
    ("arora_goyal", "Arora–Goyal", fit.ag_section),
    ("collapse", "Collapse test", fit.collapse_section),
    ("composable_k", "Composable k", checks.composable_section),
    ("emergence", "Emergence & mirage", checks.emergence_section),
    ("seen_heldout", "Seen vs held-out", checks.seen_heldout_section),
    ("slingshot", "Slingshot", beyond.slingshot_section), ("shots", "In-context examples", beyond.shots_section),
    ("failure_kinds", "Format or skill", beyond.failure_kinds_section),
    ("paired", "Paired comparison", checks.paired_section),
    ("history", "Monitoring", history_section),
    ("checkpoints", "Checkpoints", checks.checkpoints_section),
    ("failures", "Failures", checks.failures_section),
)
"""(section id, navigation label, renderer) in page order; the ids are stable anchors."""

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1d1d1f;margin:0;
 background:#f6f6f4}
main{max-width:940px;margin:0 auto;padding:12px 20px 60px;background:#fff}
h1{font-size:1.55em;margin:.6em 0 .2em}h2{font-size:1.25em;border-bottom:2px solid #e3e3e0;padding-bottom:.2em;
 margin-top:1.8em}h3{font-size:1.02em;margin:1em 0 .3em}
nav{font-size:.85em;line-height:1.9}nav a{margin-right:.7em;color:#2452a4;text-decoration:none;white-space:nowrap}
.headline{background:#f1f6ff;border:2px solid #7aa2e3;border-radius:8px;padding:4px 18px 12px;margin-top:14px}
.headline h2{border:none;margin-top:.5em}.headline ul{padding-left:1.2em;margin:.3em 0}.headline li{margin:.25em 0}
.overview{color:#444}.intro{color:#333}.caption{font-size:.88em;color:#444;margin-bottom:.2em}
figure{margin:12px 0}figure img{width:100%;max-width:900px;height:auto;display:block;border:1px solid #eee}
figcaption{font-size:.82em;color:#666;margin-top:2px}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.82em;margin:8px 0;min-width:40%}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;vertical-align:top;white-space:nowrap}
th{background:#f3f3f1;text-align:center;white-space:normal}td:first-child,td[data-col=verdict],
td[data-col=reason],td[data-col=error]{text-align:left}td[data-col=verdict],td[data-col=reason],td[data-col=error],
table.compact td{white-space:normal}table.full{font-size:.74em}
.na{color:#a33}.why{color:#a33;font-size:.9em}sup.fn{color:#a33;font-size:.72em;margin-left:1px}
ol.notes{font-size:.78em;color:#555;margin:0 0 8px;padding-left:1.6em}
details{margin:6px 0;font-size:.9em}summary{cursor:pointer;color:#2452a4}
.status{background:#fff4e5;border-left:4px solid #e39b2d;padding:4px 8px}.empty,.more{color:#777;font-size:.85em}
code{background:#f2f2f2;padding:0 3px;border-radius:3px}
"""


def render_document(data: ReportData, figures: dict[str, bytes]) -> str:
    """The whole report page.

    Args:
        data: analysis summary, tables, checkpoints and records of one run.
        figures: PNG bytes by figure name (`plots.FIGURES`); a missing one is noted in its section.
    """
    nav = "".join(f'<a href="#{esc(sid)}">{esc(label)}</a>' for sid, label, _ in SECTIONS)
    body = "".join(render(data, figures) for _, _, render in SECTIONS)
    title = f"Emergence report — {data.run_id}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
            f"<h1>{esc(title)}</h1><nav>{nav}</nav>{headline(data)}{body}"
            f'<p class="more">Tables: analysis/*.parquet; figures: plots/*.png; summary: analysis.json.</p>'
            f"</main></body></html>\n")
