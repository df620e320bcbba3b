"""Offline analysis of scored records: scaling laws, competence curves, product rule and Arora-Goyal checks.

`analyze(records, checkpoints)` runs everything and returns an `AnalysisResult` of tidy tables plus a
JSON-serializable summary; the estimators it uses are importable on their own.
"""
from harness.analysis.ag_bound import tail_bound, tail_bound_beta
from harness.analysis.analyze import analyze
from harness.analysis.bootstrap import bootstrap_ci
from harness.analysis.collapse import CollapseModel
from harness.analysis.curves import CompetenceCurve
from harness.analysis.paired import paired_comparison
from harness.analysis.result import TABLE_COLUMNS, TABLES, AnalysisConfig, AnalysisResult
from harness.analysis.scaling import ScalingLaw
from harness.analysis.schema import split_skills
from harness.analysis.stats import chance_correct, jeffreys, mcnemar_exact

__all__ = [
    "TABLES", "TABLE_COLUMNS", "AnalysisConfig", "AnalysisResult", "CollapseModel", "CompetenceCurve", "ScalingLaw",
    "analyze", "bootstrap_ci", "chance_correct", "jeffreys", "mcnemar_exact", "paired_comparison", "split_skills",
    "tail_bound", "tail_bound_beta",
]
