"""Resolves what the user passed as `--family` into the checkpoints of one family.

Accepted: a family manifest (YAML: ours from `emergence zoo build`, or a hand-written list of
``{path, label, size}``), or plain folders, step-subfolder trees, globs and GGUF files. Sizes and
steps are detected from the files, not typed by hand.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from harness.checkpoints.discovery import Checkpoint, discover
from harness.safe_yaml import read_yaml_bounded
from skill_catalog.errors import UserError


@dataclass(frozen=True)
class Unresolved:
    """A checkpoint named by the user that could not be found or read."""

    label: str
    """The label or path the user gave."""
    error: str
    """One-line reason and fix."""


@dataclass(frozen=True)
class Member:
    """One checkpoint of a family, with its place in the size x step grid."""

    checkpoint: Checkpoint
    """The checkpoint (identity, counts, paths)."""
    size: str
    """Size label: the manifest's, else the label without its step part."""


def _manifest_members(path: Path, allow_pickle: bool, hash_cache: Path | None) -> list[Member | Unresolved]:
    data = read_yaml_bounded(path)
    rows = data.get("checkpoints") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        raise UserError(f"{path} lists no checkpoints; a family manifest needs a 'checkpoints:' list of paths")
    members = []
    for row in rows:
        if not isinstance(row, dict) or "path" not in row:
            raise UserError(f"{path}: every checkpoint entry needs a 'path'; fix entry {str(row)[:80]}")
        folder = (path.parent / str(row["path"])).resolve()
        label, failures = str(row.get("label", row["path"])), []
        try:
            found = [c for c in discover(folder, allow_pickle, hash_cache, failures) if c.path == folder]
        except UserError as err:
            members.append(Unresolved(label, err.one_line()))
            continue
        if not found:  # the entry's own weights failed (its step subfolders are not this entry)
            own = [reason for where, _, reason in failures if where == folder]
            members.append(Unresolved(label, own[0] if own else f"{folder}: holds no weights of its own; fix: "
                                      "list each step folder as its own entry"))
            continue
        ckpt = replace(found[0], label=str(row.get("label", found[0].label)))
        if ckpt.step is None and row.get("step") is not None:
            step, tokens = row["step"], row.get("tokens_seen")
            if not isinstance(step, int) or not isinstance(tokens, (int, type(None))):
                members.append(Unresolved(label, f"{path}: 'step' and 'tokens_seen' of entry {label!r} must be "
                                                 "integers; fix the family manifest"))
                continue
            ckpt = replace(ckpt, step=step, tokens_seen=tokens)
        members.append(Member(ckpt, str(row.get("size", _size_of(ckpt.label)))))
    return members


def _size_of(label: str) -> str:
    """The size part of a label: ``pythia-70m/step1000`` -> ``pythia-70m``."""
    head = label.split("/")[0]
    return re.sub(r"[@/-]?(step|checkpoint)[-_]?\d+$", "", head) or head


def resolve_family(
    specs: Sequence[str], allow_pickle: bool = False, hash_cache: Path | None = None
) -> tuple[tuple[Member, ...], tuple[Unresolved, ...]]:
    """Every checkpoint named by `specs` (manifests, folders, globs), in the order given, without repeats.

    Returns:
        The resolved members, and the checkpoints that could not be resolved (each with its reason),
        so one bad folder does not stop the others.
    """
    if not specs:
        raise UserError("no checkpoints given; pass --family with a manifest, folders or a glob")
    members: list[Member | Unresolved] = []
    for spec in specs:
        try:
            members += _resolve_one(spec, allow_pickle, hash_cache)
        except UserError as err:
            members.append(Unresolved(spec, err.one_line()))
    unique: dict[tuple[Path, str], Member] = {}
    for m in members:
        if isinstance(m, Member):
            unique.setdefault((m.checkpoint.path, m.checkpoint.label), m)
    return tuple(unique.values()), tuple(m for m in members if isinstance(m, Unresolved))


def _resolve_one(spec: str, allow_pickle: bool, hash_cache: Path | None) -> list[Member | Unresolved]:
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "family.yaml").exists():
        path = path / "family.yaml"
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return _manifest_members(path.resolve(), allow_pickle, hash_cache)
    failures = []  # each unreadable step folder fails alone; its good siblings are members
    found = discover(spec, allow_pickle, hash_cache, failures)
    return [Member(c, _size_of(c.label)) for c in found] + [Unresolved(label, reason) for _, label, reason in failures]
