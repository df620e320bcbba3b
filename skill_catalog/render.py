"""Renders skill tuples and inputs into prompt text with versioned plain-text templates.

Templates live in ``skill_catalog/templates/{skill_set}_{mode}.{version}.txt`` and hold format fields
only; the layout rules that are not text (separators, shot joiners) are the constants below.
Training text and evaluation items use the same functions, so they can never disagree.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from skill_catalog.errors import CatalogError
from skill_catalog.skill import Skill

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_VERSION = "v1"
MODES = ("single", "chain", "conjunction", "direct")


@dataclass(frozen=True)
class Layout:
    """Non-template layout of one skill set."""

    part_separator: dict[str, str]
    """Separator between part answers, per mode."""
    answer_prefix: str
    """Text between the prompt and the first answer character (lm-eval style leading space)."""
    stop: str
    """The string that ends an answer (also the EOS token of the reference tokenizer)."""
    shot_joiner: str
    """Text between a finished exemplar and the next piece."""
    prompt_prefix: str
    """Text before the first piece (the symbolic training stream puts a newline before every piece)."""


LAYOUTS = {
    "symbolic": Layout({"single": "", "chain": ">", "conjunction": "|", "direct": ""}, "", "\n", "\n", "\n"),
    "natural": Layout({"single": "", "chain": " -> ", "conjunction": " | ", "direct": ""}, " ", "\n", "\n\n", ""),
}
TEMPLATE_SETS = {"symbolic_v2": "symbolic"}
"""Skill sets that reuse another set's templates and layout (v2 grows the symbolic set, its text is v1's)."""
LAYOUTS["symbolic_v2"] = LAYOUTS["symbolic"]


def is_symbolic(skill_set: str) -> bool:
    """True for the symbolic sets (bare words, one-token tags), False for natural-language ones."""
    return TEMPLATE_SETS.get(skill_set, skill_set) == "symbolic"


@dataclass(frozen=True)
class Rendering:
    """A rendered piece: the prompt, the gold continuation, and its parts."""

    prompt: str
    """Query text ending right before the answer (no exemplars, no prompt prefix)."""
    answer: str
    """Gold continuation including the layout's answer prefix, without the stop string."""
    part_answers: tuple[str, ...]
    """Gold answer of every scored part, in order."""


def layout(skill_set: str) -> Layout:
    """Layout constants of a skill set."""
    if skill_set not in LAYOUTS:
        raise CatalogError(f"no layout for skill set {skill_set!r}; use one of {sorted(LAYOUTS)}")
    return LAYOUTS[skill_set]


@lru_cache(maxsize=64)
def template(skill_set: str, mode: str, version: str = TEMPLATE_VERSION) -> str:
    """The template text for one (set, mode, version)."""
    path = TEMPLATE_DIR / f"{TEMPLATE_SETS.get(skill_set, skill_set)}_{mode}.{version}.txt"
    if not path.exists():
        raise CatalogError(f"no template {path.name}; template versions available: {_versions()}")
    return path.read_text().rstrip("\n")


def _versions() -> str:
    return ", ".join(sorted({p.suffixes[0].lstrip(".") for p in TEMPLATE_DIR.glob("*.txt")}))


def chain_values(skills: Sequence[Skill], x: str) -> tuple[str, ...]:
    """Intermediate results s_1(x), s_2(s_1(x)), ... (the last is the chain's answer)."""
    values, current = [], x
    for s in skills:
        current = s.apply(current)
        values.append(current)
    return tuple(values)


def answer_text(skill_set: str, mode: str, parts: Sequence[str]) -> str:
    """Joins part answers into the continuation a model must produce."""
    lay = layout(skill_set)
    return lay.answer_prefix + lay.part_separator[mode].join(parts)


def _quote(skill_set: str, value: str) -> str:
    return value if is_symbolic(skill_set) else f'"{value}"'


def _fields(skills: Sequence[Skill], inputs: Sequence[str], mode: str) -> dict[str, str]:
    set_name = skills[0].skill_set
    q = [_quote(set_name, x) for x in inputs]
    if is_symbolic(set_name):
        return {
            "tag": skills[0].tag, "x": q[0], "tags": " ".join(s.tag for s in skills),
            "queries": "|".join(f"{s.tag} {x}" for s, x in zip(skills, q)),
        }
    return {
        "instruction": skills[0].instruction.format(x=q[0]), "x": q[0], "k": str(len(skills)),
        "questions": "\n".join(f"{i}. {s.instruction.format(x=x)}" for i, (s, x) in enumerate(zip(skills, q), 1)),
        "steps": "\n".join(
            f"{i}. {s.instruction.format(x='the current value')}" for i, s in enumerate(skills, 1)
        ),
    }


def render(skills: Sequence[Skill], inputs: Sequence[str], mode: str, version: str = TEMPLATE_VERSION) -> Rendering:
    """Renders one piece.

    Args:
        skills: the skill tuple in application/question order.
        inputs: one input for chain/direct/single, one per skill for conjunction.
        mode: one of `MODES`.
        version: template version.
    """
    if mode not in MODES:
        raise CatalogError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    set_name = skills[0].skill_set
    if mode == "conjunction":
        parts = tuple(s.apply(x) for s, x in zip(skills, inputs))
    elif mode == "direct":
        parts = chain_values(skills, inputs[0])[-1:]
    else:
        parts = chain_values(skills, inputs[0])
    prompt = template(set_name, mode, version).format(**_fields(skills, inputs, mode))
    return Rendering(prompt=prompt, answer=answer_text(set_name, mode, parts), part_answers=parts)


def split_parts(skill_set: str, mode: str, answer: str) -> tuple[str, ...]:
    """Splits a (predicted) answer into parts with the layout's separator (whitespace-tolerant)."""
    lay = layout(skill_set)
    sep = lay.part_separator[mode].strip()
    text = answer.split(lay.stop, 1)[0].strip()
    if not sep:
        return (text,)
    return tuple(p.strip() for p in text.split(sep))
