"""The gate's outputs: a short console verdict, a Markdown summary and JUnit XML (one test case per check)."""
from __future__ import annotations

import math
from xml.etree import ElementTree as ET

from harness.gate.decide import FAILED, SKIPPED, UNDECIDED, CheckResult, MAX_ITEMS
from harness.gate.evaluate import GateResult


def _num(x: float, digits: int = 3) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def check_line(c: CheckResult) -> str:
    """One line per check: verdict, estimate [interval] vs threshold, adjusted p, items."""
    text = f"{c.verdict:<13} {c.check}: {_num(c.estimate)} [{_num(c.lo)}, {_num(c.hi)}] vs {_num(c.threshold)}"
    if math.isfinite(c.p_pass):
        text += f" (p pass {_num(c.p_pass, 4)}, p fail {_num(c.p_fail, 4)}; {c.n_items} items, {c.n_clusters} units)"
    if c.verdict == UNDECIDED and math.isfinite(c.items_needed):
        more = "more than " if c.items_needed >= MAX_ITEMS else ""
        text += f"; needs {more}{int(c.items_needed)} items"
    return text + (f" — {c.note}" if c.note else "")


def console(result: GateResult) -> str:
    """The verdict per stage and per check, as printed by `emergence gate`."""
    lines = [f"gate {result.policy}: baseline {result.baseline}, candidate {result.candidate}, metric {result.metric}"]
    for stage in result.stages:
        lines.append(f"stage {stage.name}: {stage.verdict}")
        lines += [f"  {check_line(c)}" for c in stage.checks]
    lines.append(f"verdict: {'PASSED' if result.passed else 'NOT PASSED'}")
    return "\n".join(lines)


def markdown(result: GateResult) -> str:
    """Markdown summary: a table per stage."""
    out = [f"# Gate `{result.policy}`", "", f"Baseline **{result.baseline}**, candidate **{result.candidate}**, "
           f"metric `{result.metric}`. Verdict: **{'passed' if result.passed else 'not passed'}**.", "",
           "Intervals are two-sided 1 − 2α (the bounds of the one-sided tests); p-values are adjusted across "
           "the checks of a stage.", ""]
    for stage in result.stages:
        out += [f"## Stage `{stage.name}`: {stage.verdict}", ""]
        if not stage.checks:
            continue
        out += ["| check | verdict | estimate [interval] | threshold | p pass | p fail | items | items needed |",
                "|---|---|---|---|---|---|---|---|"]
        for c in stage.checks:
            needed = "" if not math.isfinite(c.items_needed) else str(int(c.items_needed))
            out.append(f"| {c.check} | {c.verdict} | {_num(c.estimate)} [{_num(c.lo)}, {_num(c.hi)}] | "
                       f"{_num(c.threshold)} | {_num(c.p_pass, 4)} | {_num(c.p_fail, 4)} | {c.n_items} | {needed} |")
        out.append("")
    return "\n".join(out)


def junit(result: GateResult) -> str:
    """JUnit XML: one test suite per stage, one test case per check (failed = failure, undecided = error)."""
    root = ET.Element("testsuites", name=f"gate {result.policy}")
    for stage in result.stages:
        checks = [c for c in stage.checks if c.verdict != SKIPPED]
        suite = ET.SubElement(root, "testsuite", name=stage.name, tests=str(len(checks)),
                              failures=str(sum(c.verdict == FAILED for c in checks)),
                              errors=str(sum(c.verdict == UNDECIDED for c in checks)),
                              skipped="1" if not stage.checks else "0")
        if not stage.checks:
            ET.SubElement(ET.SubElement(suite, "testcase", name=stage.name, classname=stage.name), "skipped",
                          message="previous stage did not pass")
        for c in checks:
            case = ET.SubElement(suite, "testcase", name=c.check, classname=f"gate.{stage.name}")
            if c.verdict == FAILED:
                ET.SubElement(case, "failure", message=check_line(c))
            elif c.verdict == UNDECIDED:
                ET.SubElement(case, "error", message=check_line(c))
    return ET.tostring(root, encoding="unicode", xml_declaration=True)
