"""The `natural` skill set: skills a pretrained LM could know, in families (filled by submodules)."""
from skill_catalog.natural import types  # noqa: F401  (value types first: skills refer to them)
from skill_catalog.natural import arithmetic, counting, dates, facts, lexical, lists, strings  # noqa: F401
