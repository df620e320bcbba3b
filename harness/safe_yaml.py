"""Reading small YAML files (task suites, family manifests) from untrusted hands, with bounded cost.

The file's size, its number of nodes, their nesting depth and each scalar's length are checked on the
parser's event stream before any value is built, and aliases (``*name``, the "billion laughs" expansion)
are refused outright, so no file can make the harness build or print a value larger than the caps.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 256 * 1024
"""Largest YAML file read."""
MAX_NODES = 20_000
"""Most scalars, lists and mappings in one file."""
MAX_DEPTH = 32
"""Deepest nesting of lists and mappings."""
MAX_SCALAR_CHARS = 10_000
"""Longest single value."""


class _OverCap(ValueError):
    """The file exceeds one of the caps (the message says which)."""


def _check_events(text: str) -> None:
    nodes = depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise _OverCap(f"uses a YAML alias (*{event.anchor}); aliases are not allowed, write the value out")
        if isinstance(event, (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            nodes += 1
            if nodes > MAX_NODES:
                raise _OverCap(f"has more than {MAX_NODES} YAML nodes (the cap)")
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise _OverCap(f"nests lists or mappings deeper than {MAX_DEPTH} levels (the cap)")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1
        elif isinstance(event, yaml.ScalarEvent) and len(event.value) > MAX_SCALAR_CHARS:
            raise _OverCap(f"has a value of {len(event.value)} characters; the cap is {MAX_SCALAR_CHARS}")


def read_yaml_bounded(path: Path) -> Any:
    """The parsed content of a small YAML file, read with the safe loader within the caps above.

    Raises:
        UserError: the file is unreadable, too large, not UTF-8, not valid YAML, uses an alias or
            exceeds a cap; the message names the file and the cap.
    """
    from skill_catalog.errors import UserError

    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise UserError(f"{path} is {size} bytes; the cap for a YAML file is {MAX_BYTES} bytes")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 text (byte {err.start}); fix: save it as UTF-8") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read it ({err.strerror or err}); fix: check the path and its permissions") from None
    try:
        _check_events(text)
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path} is not valid YAML{where}; fix its syntax") from None
    except _OverCap as err:
        raise UserError(f"{path} {err}") from None
    except (ValueError, RecursionError) as err:  # a value the loader cannot build (e.g. an int of 5,000 digits)
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise UserError(f"{path}: a value cannot be read ({first}); fix: write a smaller or plainer value") from None
