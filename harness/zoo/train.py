"""Trains one size of a family with a plain PyTorch loop, resumable from its last saved state.

Batch s is always windows [s*B, (s+1)*B) of the shared token stream, the learning rate is a
function of the step, and the optimizer state is saved with the weights, so a build killed at any
moment and restarted ends with the same weights as an uninterrupted one (same machine, threads).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import GPTNeoXForCausalLM, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from harness.parallel import world
from harness.zoo.presets import ModelSize, Preset, model_config
from skill_catalog.errors import UserError

RESUME_EVERY = 100
"""Optimizer steps between resume states (besides every checkpoint step)."""


@dataclass(frozen=True)
class SizeResult:
    """What training one size produced."""

    size: ModelSize
    """The size trained."""
    losses: tuple[float, ...]
    """Training loss of every step run in this call (not of resumed steps)."""
    seconds: float
    """Wall time of the steps run in this call."""


def step_dir(size_dir: Path, step: int) -> Path:
    """Folder of the checkpoint of one step (Pythia-style name, zero-padded so it sorts)."""
    return size_dir / f"step{step:05d}"


def atomic_dir(final: Path, write: Callable[[Path], None]) -> None:
    """Writes a folder under a temporary name and renames it, so a partial folder never looks complete."""
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def _device(preset: Preset) -> torch.device:
    if preset.device == "auto" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _optimizer(model: torch.nn.Module, preset: Preset, size: ModelSize) -> torch.optim.AdamW:
    matrices = [p for p in model.parameters() if p.ndim >= 2]
    others = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": matrices, "weight_decay": preset.weight_decay}, {"params": others, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=size.peak_lr, betas=(0.9, 0.95), eps=1e-8)


def _save_checkpoint(model, tokenizer, dest: Path, meta: dict, save_dtype: str) -> None:
    def write(tmp: Path) -> None:
        hf_logging.disable_progress_bar()  # one bar per saved shard would drown the build's own progress
        model.save_pretrained(tmp)
        if save_dtype != "float32":  # weights stored small; the runner upcasts to fp32 on load
            state = {k: v.to(getattr(torch, save_dtype)).contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            config = json.loads((tmp / "config.json").read_text())
            config["dtype"] = save_dtype
            (tmp / "config.json").write_text(json.dumps(config, indent=2))
        tokenizer.save_pretrained(tmp)
        (tmp / "train_meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))

    atomic_dir(dest, write)


def _save_resume(model, optimizer, resume: Path, step: int) -> None:
    def write(tmp: Path) -> None:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step}))

    atomic_dir(resume, write)


def _load_resume(model, optimizer, resume: Path) -> int:
    if not (resume / "state.json").exists():
        return 0
    model.load_state_dict(load_file(str(resume / "model.safetensors")))
    # Our own file, written above; weights_only keeps even that from running code.
    optimizer.load_state_dict(torch.load(resume / "optimizer.pt", weights_only=True))
    return int(json.loads((resume / "state.json").read_text())["step"])


def _batch(ids: np.ndarray, preset: Preset, step: int, device: torch.device) -> torch.Tensor:
    n = preset.batch_size * preset.seq_len
    window = ids[step * n:(step + 1) * n]
    return torch.from_numpy(window.reshape(preset.batch_size, preset.seq_len).copy()).to(device)


def _data_parallel(model, optimizer, preset: Preset, device: torch.device):
    """Wraps model and optimizer for several processes (accelerate/torchrun); a no-op for one.

    Each process takes every world-size-th row of a step's batch, and gradients are averaged, so the
    global batch, schedule and data order stay those of one process.
    """
    w = world()
    if w.size == 1:
        return model, optimizer, w, lambda m: m
    if preset.batch_size % w.size:
        raise UserError(f"batch size {preset.batch_size} does not split over {w.size} processes; use a divisor")
    from accelerate import Accelerator

    acc = Accelerator(cpu=device.type == "cpu")
    model, optimizer = acc.prepare(model, optimizer)
    return model, optimizer, w, acc.unwrap_model


def train_size(
    preset: Preset, size: ModelSize, size_dir: Path, ids: np.ndarray, tokenizer: PreTrainedTokenizerBase,
    meta: dict, seed: int, on_step: Callable[[int, float], None] = lambda step, loss: None,
) -> SizeResult:
    """Trains (or resumes) one size and saves its checkpoint folders; the final one is `size_dir` itself.

    Args:
        preset: schedule and checkpoint steps.
        size: the model size.
        size_dir: output folder of this size.
        ids: the family's shared token stream.
        tokenizer: saved next to every checkpoint.
        meta: family-level facts written into every ``train_meta.json``.
        seed: weight-initialisation seed.
        on_step: progress callback (step, loss).
    """
    device, steps = _device(preset), preset.steps_of(size)
    torch.manual_seed(seed)
    config = model_config(size, len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id, preset.seq_len)
    model = GPTNeoXForCausalLM(config).to(device).train()
    optimizer = _optimizer(model, preset, size)
    resume = size_dir / ".resume"
    start = _load_resume(model, optimizer, resume)
    model, optimizer, w, unwrap = _data_parallel(model, optimizer, preset, device)
    losses, t0 = [], time.perf_counter()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    for step in range(start, steps):
        for group in optimizer.param_groups:
            group["lr"] = preset.lr_at(step, size.peak_lr, steps)
        batch = _batch(ids, preset, step, device)[w.rank::w.size]
        with autocast:
            loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        on_step(step + 1, losses[-1])
        if w.is_main:
            _save_step(unwrap(model), optimizer, tokenizer, preset, size, size_dir, step + 1, {**meta, "seed": seed})
    if w.is_main:
        _promote_final(size_dir)
        shutil.rmtree(resume, ignore_errors=True)
    barrier(w)
    return SizeResult(size, tuple(losses), time.perf_counter() - t0)


def _save_step(model, optimizer, tokenizer, preset: Preset, size: ModelSize, size_dir: Path, done: int,
               meta: dict) -> None:
    """Saves the checkpoint of step `done` when it is one, and the resume state when due."""
    saves = preset.checkpoint_steps(preset.steps_of(size))
    if done in saves:
        step_meta = {**meta, "size": size.name, "step": done, "tokens_seen": done * preset.tokens_per_step}
        dest = size_dir / ".final" if done == preset.steps_of(size) else step_dir(size_dir, done)
        _save_checkpoint(model, tokenizer, dest, step_meta, preset.save_dtype)
    if done in saves or done % RESUME_EVERY == 0:
        _save_resume(model, optimizer, size_dir / ".resume", done)


def barrier(w) -> None:
    """Waits for every data-parallel process (a no-op for one)."""
    if w.size > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


def _promote_final(size_dir: Path) -> None:
    """Moves the final checkpoint's files from ``.final/`` to the size folder (step folders stay)."""
    final = size_dir / ".final"
    if not final.exists():
        return
    # train_meta.json moves last: its presence in the size folder marks the size complete.
    for f in sorted(final.iterdir(), key=lambda f: f.name == "train_meta.json"):
        os.replace(f, size_dir / f.name)
    final.rmdir()


def is_complete(size_dir: Path, steps: int) -> bool:
    """True when the size folder holds its final checkpoint."""
    meta = size_dir / "train_meta.json"
    return meta.exists() and json.loads(meta.read_text()).get("step") == steps and not (size_dir / ".final").exists()
