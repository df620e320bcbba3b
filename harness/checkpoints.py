"""Checkpoint discovery and identity: a `Checkpoint` is one model of a family, named by its weights' hash.

Discovery reads file headers and hashes bytes only (see `harness.weights`): pickle weight files are
never opened unless allowed, and nothing here imports model code.
"""
from __future__ import annotations

import glob
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from harness.weights import (
    TOKENIZER_FILES, count_params_safetensors, gguf_info, is_pickle_weights, model_hash, weight_files, weights_hash,
)
from harness.errors import as_user_error
from skill_catalog.errors import UserError

STEP_RE = re.compile(r"(?:^|[^A-Za-z])(?:step|checkpoint)[-_]?(\d+)$", re.IGNORECASE)
"""Training step in a folder or file name: ``step1000``, ``step-1000``, ``step_1000``, ``checkpoint-1000``."""


@dataclass(frozen=True)
class Checkpoint:
    """One model of a checkpoint family."""

    path: Path
    """Absolute path of the model folder (or of the ``.gguf`` file)."""
    label: str
    """Human-readable name, e.g. ``pythia-70m/step1000``; not an identity."""
    checkpoint_id: str
    """The identity of the model: sha256 over the weight files' contents (sorted by file name), config.json and the
    tokenizer's files (a ``.gguf`` file holds all three, so its hash)."""
    architecture: str
    """``architectures[0]`` of config.json (or the model type / GGUF architecture)."""
    params: int | None
    """Number of parameters, counted from file headers; None when that needs unpickling."""
    params_nonembedding: int | None
    """`params` minus input, output (if untied) and position embeddings."""
    dtype: str
    """Storage dtype of most weights, e.g. ``F32``, ``BF16``, ``Q8_0``."""
    step: int | None
    """Training step from ``train_meta.json`` or the folder name."""
    tokens_seen: int | None
    """Training tokens seen, from ``train_meta.json``."""
    tokenizer_path: Path
    """Folder (or ``.gguf`` file) the tokenizer is loaded from."""
    fmt: str
    """Weight format: ``"safetensors"``, ``"pickle"`` or ``"gguf"``."""
    weight_files: tuple[Path, ...] = ()
    """The files hashed into `checkpoint_id` (and loaded)."""


def parse_step(name: str) -> int | None:
    """The training step encoded in a folder or file name, or None."""
    match = STEP_RE.search(name)
    return int(match.group(1)) if match else None


def _train_meta(folder: Path) -> tuple[int | None, int | None]:
    """(step, tokens_seen) from ``train_meta.json`` if present, else the step parsed from the name."""
    meta_path = folder / "train_meta.json"
    meta = {}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{meta_path}: unreadable train_meta.json ({exc}); fix or remove it") from exc
    step = meta.get("step", parse_step(folder.name))
    tokens = meta.get("tokens_seen")
    return (None if step is None else int(step)), (None if tokens is None else int(tokens))


def _find_tokenizer(folder: Path) -> Path:
    """The folder itself, or for a step subfolder its family folder (which often holds the tokenizer)."""
    for candidate in (folder, folder.parent) if parse_step(folder.name) is not None else (folder,):
        if any((candidate / name).is_file() for name in TOKENIZER_FILES):
            return candidate
    raise UserError(
        f"{folder}: no tokenizer (none of {', '.join(TOKENIZER_FILES)}; a step folder may also use its parent's); "
        "fix: save the tokenizer with tokenizer.save_pretrained() into the checkpoint folder"
    )


def _read_config(folder: Path) -> dict:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise UserError(f"{folder}: no config.json; fix: save the model with model.save_pretrained()")
    try:
        return json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{config_path}: unreadable config.json ({exc}); fix: re-save the model") from exc


def _hf_checkpoint(folder: Path, label: str, allow_pickle: bool, hash_cache: Path | None) -> Checkpoint:
    config = _read_config(folder)
    fmt, files = weight_files(folder, allow_pickle)
    counts = count_params_safetensors(files) if fmt == "safetensors" else None
    step, tokens_seen = _train_meta(folder)
    tokenizer_path = _find_tokenizer(folder)
    return Checkpoint(
        path=folder,
        label=label,
        checkpoint_id=model_hash(weights_hash(files, hash_cache), folder / "config.json", tokenizer_path),
        architecture=(config.get("architectures") or [config.get("model_type", "unknown")])[0],
        params=counts.total if counts else None,
        params_nonembedding=counts.nonembedding if counts else None,
        dtype=counts.dtype if counts else str(config.get("torch_dtype") or config.get("dtype") or "unknown"),
        step=step,
        tokens_seen=tokens_seen,
        tokenizer_path=tokenizer_path,
        fmt=fmt,
        weight_files=tuple(files),
    )


def _gguf_checkpoint(file: Path, label: str, hash_cache: Path | None) -> Checkpoint:
    architecture, counts = gguf_info(file)
    step, tokens_seen = _train_meta(file.parent)
    return Checkpoint(
        path=file,
        label=label,
        checkpoint_id=weights_hash([file], hash_cache),
        architecture=architecture,
        params=counts.total,
        params_nonembedding=counts.nonembedding,
        dtype=counts.dtype,
        step=parse_step(file.stem) if parse_step(file.stem) is not None else step,
        tokens_seen=tokens_seen,
        tokenizer_path=file,
        fmt="gguf",
        weight_files=(file,),
    )


def _has_weights(folder: Path) -> bool:
    return any(p.suffix == ".safetensors" or is_pickle_weights(p) for p in folder.iterdir() if p.is_file())


Failures = list[tuple[Path, str, str]]
"""(path, label, one-line reason) of each checkpoint that could not be read, when the caller collects them."""


def _each(make, path: Path, label: str, failures: Failures | None) -> list[Checkpoint]:
    """`make()`, or when `failures` collects them and `make` fails, `[]` with the reason recorded (siblings go on)."""
    try:
        return make()
    except (UserError, OSError) as exc:  # an unreadable file or folder is a reason too, not a traceback
        err = as_user_error(exc)
        if failures is None:
            raise err from exc
        failures.append((path, label, err.one_line()))
        return []


def _discover_path(path: Path, allow_pickle: bool, hash_cache: Path | None,
                   failures: Failures | None = None) -> list[Checkpoint]:
    if path.is_file():
        if path.suffix != ".gguf":
            raise UserError(f"{path}: not a checkpoint; fix: pass a model folder, a .gguf file or a glob")
        return [_gguf_checkpoint(path, path.stem, hash_cache)]
    if not path.is_dir():
        raise UserError(f"{path}: no such checkpoint folder or file; fix: check the path")
    found, before = [], len(failures or ())
    if _has_weights(path):
        found += _each(lambda: [_hf_checkpoint(path, path.name, allow_pickle, hash_cache)], path, path.name, failures)
    steps = [p for p in path.iterdir() if p.is_dir() and parse_step(p.name) is not None]
    steps.sort(key=lambda p: (parse_step(p.name), p.name))
    for p in steps:
        label = f"{path.name}/{p.name}"
        found += _each(lambda: [_hf_checkpoint(p, label, allow_pickle, hash_cache)], p, label, failures)
    for p in sorted(path.glob("*.gguf")):
        found += _each(lambda: [_gguf_checkpoint(p, p.stem, hash_cache)], p, p.stem, failures)
    if not found and len(failures or ()) == before:
        raise UserError(
            f"{path}: no weights (no *.safetensors, *.gguf or step subfolders); "
            "fix: point at a folder written by model.save_pretrained()"
        )
    return found


def discover(spec: str | Path, allow_pickle: bool = False, hash_cache: Path | None = None,
             failures: Failures | None = None) -> tuple[Checkpoint, ...]:
    """Find the checkpoints named by a folder, a folder of step subfolders, a ``.gguf`` file or a glob.

    Args:
        spec: Path or glob pattern.
        allow_pickle: Accept pickle weight files (``.bin``, ``.pt``, ...). They are only hashed here.
        hash_cache: Where file hashes are cached (see `file_hashes`).
        failures: When given, a step folder, glob match or file that cannot be read is appended here as
            (path, label, reason) and its siblings are still returned; when None, the first one raises.

    Returns:
        Checkpoints sorted as found: a folder's own weights first, then step subfolders by step.

    Raises:
        UserError: Missing path, no weights, refused pickle, corrupt file, unsupported GGUF, no tokenizer.
    """
    text = str(spec)
    if any(ch in text for ch in "*?["):
        matches = sorted(glob.glob(text))
        if not matches:
            raise UserError(f"{text}: the pattern matches nothing; fix: check the glob")
        paths = [Path(m).resolve() for m in matches]
    else:
        paths = [Path(text).expanduser().resolve()]
    found: dict[tuple[Path, str], Checkpoint] = {}
    for path in paths:  # one glob match that cannot be read does not hide the others
        find = (lambda: _discover_path(path, allow_pickle, hash_cache, failures))
        for ckpt in _each(find, path, path.name, failures if len(paths) > 1 else None):
            found.setdefault((ckpt.path, ckpt.label), ckpt)
    return tuple(found.values())


def find_duplicate_weights(checkpoints: Iterable[Checkpoint]) -> list[tuple[str, ...]]:
    """Groups of labels of byte-identical checkpoints (same `checkpoint_id`: weights, config, tokenizer), each sorted."""
    by_id: dict[str, list[str]] = {}
    for ckpt in checkpoints:
        by_id.setdefault(ckpt.checkpoint_id, []).append(ckpt.label)
    return sorted(tuple(sorted(labels)) for labels in by_id.values() if len(labels) > 1)
