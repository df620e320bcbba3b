"""Builds a whole reference family and writes its manifest (``family.yaml``), which the runner reads.

A family folder holds one folder per size (the final checkpoint, loadable by `from_pretrained`)
with ``stepNNNNN/`` subfolders for the intermediate checkpoints, plus ``build.json`` (what is being
built) and, once every size is done, ``family.yaml``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import torch
import yaml
from tqdm.auto import tqdm

import skill_catalog
from harness.zoo.data import heldout_text, token_stream
from harness.zoo.presets import Preset, get_preset, preset_fields
from harness.zoo.tokenizer import build_tokenizer
from harness.parallel import world
from harness.zoo.side_by_side import train_side_by_side
from harness.zoo.train import SizeResult, barrier, is_complete, step_dir, train_size
from skill_catalog.errors import UserError
from skill_catalog.training_text import HELDOUT_SEED, TRAIN_SEED, TextSpec, spec_fields, text_hash, text_spec_for

SHIPPED_DIR = Path(__file__).parent / "shipped"
"""Where families shipped with the project live (``shipped/<preset>/``)."""
HELDOUT_PIECES = 1_000
"""Pieces of held-out text used to measure cross-entropy (about 22K tokens)."""
MANIFEST = "family.yaml"


def user_family_dir(preset: str, seed: int = 0) -> Path:
    """Default output folder of `emergence zoo build` (outside the package, never the shipped copy)."""
    home = Path(os.environ.get("EMERGENCE_HOME", Path.home() / ".cache" / "emergence-harness"))
    return home / "families" / (preset if seed == 0 else f"{preset}-seed{seed}")


def text_seed(seed: int) -> int:
    """Seed of the training text of a build seed: seed 0 keeps the shipped families' text, others reorder it."""
    return TRAIN_SEED + seed


def family_path(preset: str = "default") -> Path:
    """Folder of a built family: the user's complete build if any, else the shipped one."""
    get_preset(preset)
    for candidate in (user_family_dir(preset), SHIPPED_DIR / preset):
        if (candidate / MANIFEST).exists():
            return candidate
    raise UserError(f"no built family for preset {preset!r}; run `emergence zoo build --preset {preset}`")


def _identity(preset: Preset, seed: int, spec: TextSpec) -> dict:
    n_pieces_hint = preset.max_steps * preset.tokens_per_step // 20
    return {"preset": preset_fields(preset), "seed": seed, "catalog_version": skill_catalog.catalog_version(spec.skill_set),
            "text_seed": text_seed(seed), "text_hash": text_hash(spec, text_seed(seed), n_pieces_hint)}


def _claim(out: Path, identity: dict) -> None:
    """Refuses an output folder that holds anything but this same family."""
    marker = out / "build.json"
    if marker.exists():
        if json.loads(marker.read_text()) != json.loads(json.dumps(identity)):
            raise UserError(f"{out} holds a different family build (other preset, seed or catalog); use another --out or delete it")
        return
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} is not empty and holds no family build; use an empty or new --out folder")
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(identity, indent=2, sort_keys=True))


def _param_counts(folder: Path) -> tuple[int, int]:
    from safetensors import safe_open

    total = embed = 0
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        for name in f.keys():
            n = f.get_slice(name).get_shape()
            count = int(torch.tensor(n).prod()) if n else 1
            total += count
            embed += count if ("embed_in" in name or "embed_out" in name) else 0
    return total, total - embed


def _checkpoint_rows(out: Path, preset: Preset, seed: int, common: dict) -> list[dict]:
    rows = []
    for size in preset.sizes:
        steps = preset.steps_of(size)
        for step in preset.checkpoint_steps(steps):
            folder = out / size.name if step == steps else step_dir(out / size.name, step)
            params, params_ne = _param_counts(folder)
            rows.append({"label": f"{size.name}@{step}", "size": size.name, "path": str(folder.relative_to(out)),
                         "step": step, "tokens_seen": step * preset.tokens_per_step, "params": params,
                         "params_nonembedding": params_ne, "seed": seed, "final": step == steps, **common})
    return rows


def default_workers(preset: Preset) -> int:
    """Sizes trained side by side by default: the CPU cores over the preset's threads, at most the sizes."""
    return max(1, min(len(preset.sizes), (os.cpu_count() or 1) // max(1, preset.threads)))


def build_family(preset: Preset, out: Path, seed: int = 0, progress: bool = True, workers: int = 1,
                 on_size: Callable[[SizeResult], None] = lambda result: None) -> Path:
    """Trains every size of `preset` on one shared data order and writes the manifest; resumable.

    Args:
        preset: what to train.
        out: the family folder (claimed by ``build.json``).
        seed: initialisation seed and data-order seed (`text_seed`).
        progress: show progress bars.
        workers: sizes trained side by side in separate processes (each with the preset's threads); the
            weights are the same as with one worker, since every size is trained on its own.
        on_size: called in this process with each size's `SizeResult` as it finishes.

    Returns:
        The path of the written ``family.yaml``.
    """
    threads = torch.get_num_threads()
    torch.set_flush_denormal(True)  # denormals once slowed a CPU pilot build 7x (recipe, section 7)
    torch.set_num_threads(preset.threads)
    try:
        return _build(preset, out, seed, progress, workers, on_size)
    finally:
        torch.set_num_threads(threads)


def _build(preset: Preset, out: Path, seed: int, progress: bool, workers: int,
           on_size: Callable[[SizeResult], None]) -> Path:
    spec, tokenizer, w = text_spec_for(preset.skill_set), build_tokenizer(preset.skill_set), world()
    identity = _identity(preset, seed, spec)
    if w.is_main:
        _claim(out, identity)
    barrier(w)  # under accelerate every process trains its slice of each batch; rank 0 writes
    stream = token_stream(spec, text_seed(seed), preset.max_steps * preset.tokens_per_step, tokenizer)
    meta = {"preset": preset.name, "catalog_version": identity["catalog_version"], "text_hash": identity["text_hash"],
            "text_entropy_nats_per_token": stream.entropy.nats_per_token}
    progress = progress and w.is_main
    total = tqdm(total=sum(preset.steps_of(s) for s in preset.sizes), desc="family", unit="step", disable=not progress)
    todo = []
    for size in preset.sizes:
        if is_complete(out / size.name, preset.steps_of(size)):
            total.update(preset.steps_of(size))
        else:
            todo.append(size)
    if workers > 1 and w.size == 1 and len(todo) > 1:  # data-parallel builds train one size at a time
        train_side_by_side(preset, todo, out, stream.ids, tokenizer, meta, seed, workers, total, on_size)
        todo = []
    for size in todo:
        bar = tqdm(total=preset.steps_of(size), desc=size.name, unit="step", leave=False, disable=not progress)

        def on_step(step: int, loss: float, bar=bar) -> None:
            bar.n = step
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            bar.update(0)
            total.update(1)

        on_size(train_size(preset, size, out / size.name, stream.ids, tokenizer, meta, seed, on_step))
        bar.close()
    total.close()
    if not w.is_main:
        return out / MANIFEST
    return _write_manifest(out, preset, seed, identity, stream, tokenizer)


def _write_manifest(out: Path, preset: Preset, seed: int, identity: dict, stream, tokenizer) -> Path:
    spec = text_spec_for(preset.skill_set)
    _, heldout_entropy = heldout_text(spec, HELDOUT_SEED, HELDOUT_PIECES, tokenizer)
    common = {"catalog_version": identity["catalog_version"], "text_hash": identity["text_hash"],
              "text_entropy_nats_per_token": stream.entropy.nats_per_token}
    manifest = {
        "family": preset.name, "seed": seed, **{k: identity[k] for k in ("catalog_version", "text_hash")},
        "training_text": {"spec": spec_fields(spec), "seed": text_seed(seed), "n_tokens": int(len(stream.ids)),
                          "n_pieces": stream.n_pieces, "entropy_nats_per_token": stream.entropy.nats_per_token},
        "heldout_text": {"seed": HELDOUT_SEED, "n_pieces": HELDOUT_PIECES, "n_tokens": heldout_entropy.n_tokens,
                         "entropy_nats": heldout_entropy.nats,
                         "entropy_nats_per_token": heldout_entropy.nats_per_token},
        "schedule": {k: v for k, v in preset_fields(preset).items() if k not in ("sizes", "name")},
        "sizes": preset_fields(preset)["sizes"],
        "checkpoints": _checkpoint_rows(out, preset, seed, common),
    }
    tmp = out / (MANIFEST + ".partial")
    tmp.write_text(yaml.safe_dump(manifest, sort_keys=False))
    os.replace(tmp, out / MANIFEST)
    return out / MANIFEST


def load_manifest(folder: Path) -> dict:
    """Reads a family manifest with the safe YAML loader."""
    path = folder / MANIFEST if folder.is_dir() else folder
    if not path.exists():
        raise UserError(f"{path} does not exist; build the family with `emergence zoo build` or pass its folder")
    return yaml.safe_load(path.read_text())
