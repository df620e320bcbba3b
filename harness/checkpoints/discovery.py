"""Checkpoint discovery and identity: a `Checkpoint` is one model of a family, named by its weights' hash.

Discovery reads file headers and hashes bytes only (see `harness.checkpoints.weight_files`): pickle weight files are
never opened unless allowed, and nothing here imports model code.
"""
from __future__ import annotations

import glob
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from harness.checkpoints.weight_files import (
    TOKENIZER_FILES, architecture_name, count_params_safetensors, gguf_info, is_pickle_weights, model_hash,
    weight_files, weights_hash,
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
    """transformers class name, e.g. ``LlamaForCausalLM``: ``architectures[0]`` of config.json, else the class of
    its model type or GGUF architecture (one vocabulary for folders and GGUF files)."""
    params: int | None
    """Number of parameters, counted from file headers; None when that needs unpickling."""
    params_nonembedding: int | None
    """`params` minus input, output (if untied) and position embeddings."""
    dtype: str
    """Storage dtype of most weights, e.g. ``F32``, ``BF16``; for GGUF the file's quantization type (``Q4_K_M``)."""
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


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable {what} ({exc}); fix or remove it") from exc
    return data if isinstance(data, dict) else {}


def _train_meta(folder: Path, step_folder: Path | None = None) -> tuple[int | None, int | None]:
    """(step, tokens_seen) from ``train_meta.json``, else a Trainer's ``trainer_state.json``, else the step in
    the name of `step_folder` (the folder itself unless its weights sit deeper, as in a Pythia revision folder)."""
    meta = _read_json(folder / "train_meta.json", "train_meta.json")
    trainer = _read_json(folder / "trainer_state.json", "trainer_state.json")
    step = meta.get("step", trainer.get("global_step", parse_step((step_folder or folder).name)))
    tokens = meta.get("tokens_seen", trainer.get("num_input_tokens_seen") or None)
    return (None if step is None else int(step)), (None if tokens is None else int(tokens))


def _find_tokenizer(folder: Path) -> Path:
    """The folder itself, or for a step subfolder its family folder (which often holds the tokenizer)."""
    snapshot = hub_snapshot(folder) if parse_step(folder.name) is not None else None
    for candidate in (snapshot or folder, folder.parent) if parse_step(folder.name) is not None else (folder,):
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


def _hf_checkpoint(folder: Path, label: str, allow_pickle: bool, hash_cache: Path | None,
                   step_folder: Path | None = None) -> Checkpoint:
    config = _read_config(folder)
    fmt, files = weight_files(folder, allow_pickle)
    counts = count_params_safetensors(files) if fmt == "safetensors" else None
    step, tokens_seen = _train_meta(folder, step_folder)
    tokenizer_path = _find_tokenizer(step_folder or folder)
    return Checkpoint(
        path=folder,
        label=label,
        checkpoint_id=model_hash(weights_hash(files, hash_cache), folder / "config.json", tokenizer_path),
        architecture=(config.get("architectures") or [architecture_name(config.get("model_type", "unknown"))])[0],
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


def hub_snapshot(folder: Path) -> Path | None:
    """The model folder inside a Hugging Face cache tree, as the Pythia suite's revisions are stored
    (``pythia-70m/step1000/models--EleutherAI--pythia-70m/snapshots/<commit>/``); None when there is none.

    Raises:
        UserError: The tree holds several snapshots (which revision is meant is ambiguous).
    """
    snapshots = sorted(p for p in folder.glob("models--*/snapshots/*") if p.is_dir() and _has_weights(p))
    if len(snapshots) > 1:
        names = ", ".join(p.name[:8] for p in snapshots)
        raise UserError(f"{folder}: holds {len(snapshots)} cached snapshots ({names}); "
                        "fix: keep one revision per step folder")
    return snapshots[0] if snapshots else None


def _label(path: Path) -> str:
    """``pythia-70m/step1000`` for a step folder named on its own (its size is its parent), else the folder name."""
    return f"{path.parent.name}/{path.name}" if parse_step(path.name) is not None else path.name


def _folder_checkpoint(folder: Path, label: str, allow_pickle: bool, hash_cache: Path | None) -> Checkpoint | None:
    """The checkpoint of a folder holding weights or a Hugging Face cache tree (a Pythia revision), else None."""
    if _has_weights(folder):
        return _hf_checkpoint(folder, label, allow_pickle, hash_cache)
    snapshot = hub_snapshot(folder)
    return _hf_checkpoint(snapshot, label, allow_pickle, hash_cache, step_folder=folder) if snapshot else None


def _step_checkpoint(step: Path, label: str, allow_pickle: bool, hash_cache: Path | None) -> Checkpoint:
    ckpt = _folder_checkpoint(step, label, allow_pickle, hash_cache)
    if ckpt is None:
        raise UserError(f"{step}: step folder without weights (no *.safetensors, no cached snapshot); "
                        "fix: finish copying it or remove it")
    return ckpt


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
    own_label = _label(path)
    found += _each(lambda: [c for c in [_folder_checkpoint(path, own_label, allow_pickle, hash_cache)] if c],
                   path, own_label, failures)
    steps = [p for p in path.iterdir() if p.is_dir() and parse_step(p.name) is not None]
    steps.sort(key=lambda p: (parse_step(p.name), p.name))
    for p in steps:
        label = f"{path.name}/{p.name}"
        found += _each(lambda: [_step_checkpoint(p, label, allow_pickle, hash_cache)], p, label, failures)
    for p in sorted(path.glob("*.gguf")):
        found += _each(lambda: [_gguf_checkpoint(p, p.stem, hash_cache)], p, p.stem, failures)
    if not found and len(failures or ()) == before:
        raise UserError(
            f"{path}: no weights (no *.safetensors, *.gguf, step or checkpoint-N subfolders, or cached snapshot); "
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
