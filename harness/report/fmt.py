"""Number and text formatting shared by the HTML report and the CLI: 3 significant digits, NaN as a dash.

A missing value is never printed as 0: it becomes `DASH`, and callers attach the reason.
"""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

DASH = "\u2014"
"""What a missing (NaN, None, infinite) value is shown as."""


def is_missing(value: Any) -> bool:
    """True for None, pandas NA/NaT and non-finite floats."""
    if value is None:
        return True
    if isinstance(value, (bool, str)):
        return False
    if isinstance(value, Real):
        return not math.isfinite(float(value))
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def num(value: Any, digits: int = 3) -> str:
    """A value with `digits` significant digits; integers in full, booleans as yes/no, missing as `DASH`."""
    if is_missing(value):
        return DASH
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return f"{int(value):,}" if abs(int(value)) >= 10_000 else str(int(value))
    if isinstance(value, Real):
        x = float(value)
        if x == 0:
            return "0"
        if x.is_integer() and abs(x) < 1e6:
            return str(int(x))
        if abs(x) >= 1e6 and x.is_integer():
            return f"{x:.{digits}g}".replace("e+0", "e").replace("e+", "e")
        return f"{x:.{digits}g}"
    return str(value)


def interval(value: Any, lo: Any, hi: Any, digits: int = 3) -> str:
    """`value [lo, hi]`; the bracket is dropped when both ends are missing."""
    if is_missing(lo) and is_missing(hi):
        return num(value, digits)
    return f"{num(value, digits)} [{num(lo, digits)}, {num(hi, digits)}]"


def pct(value: Any) -> str:
    """A fraction as a percentage with up to 3 significant digits ("87.5%"), missing as `DASH`."""
    return DASH if is_missing(value) else f"{100 * float(value):.3g}%"


def plural(n: int, word: str, many: str | None = None) -> str:
    """"1 analysis", "2 analyses"."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def text(value: Any) -> str:
    """A cell as text: missing as `DASH`, everything else `str`."""
    return DASH if is_missing(value) else str(value)


def short_id(checkpoint_id: Any, n: int = 8) -> str:
    """The first `n` characters of a checkpoint id."""
    return str(checkpoint_id)[:n]
