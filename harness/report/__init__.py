"""Analysis files and the HTML report of a run directory: `write_analysis`, then `write_report`.

The analyzer (`harness.analysis`) computes; this package only writes its tables, draws figures and
renders one self-contained page.
"""
from harness.report.build import read_analysis, write_analysis, write_report

__all__ = ["read_analysis", "write_analysis", "write_report"]
