"""The HTML report of a run directory: `write_report`.

The analyzer (`harness.analysis`) computes and writes its tables (`harness.analysis.io`); this package
only reads them, draws figures and renders one self-contained page.
"""
from harness.report.build import write_report

__all__ = ["write_report"]
