"""Trains several sizes of a family at once, one process per size, on one machine's CPU cores.

Every size is trained on its own (its own initialisation from the seed, the same token stream), so
the weights equal those of a one-process build at the same thread count; only the wall time changes.
The largest sizes start first, so the longest one never waits behind the small ones.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from harness.zoo.presets import ModelSize, Preset
from harness.zoo.train import SizeResult, train_size

PROGRESS_EVERY = 25
"""Steps between the progress messages a worker sends."""

_progress: multiprocessing.Queue | None = None


def _exit_with_parent(parent: int) -> None:
    """Ends this worker within a second of the build process's death (killed builds leave no trainers behind,
    so a rerun resumes alone), whether the worker is training or waiting for work."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _start_worker(progress: multiprocessing.Queue, threads: int) -> None:
    global _progress
    _progress = progress
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    torch.set_flush_denormal(True)
    torch.set_num_threads(threads)


def _train_one(preset: Preset, size: ModelSize, size_dir: Path, ids: np.ndarray, tokenizer: PreTrainedTokenizerBase,
               meta: dict, seed: int) -> SizeResult:
    last = [0]

    def on_step(step: int, loss: float) -> None:
        if step % PROGRESS_EVERY == 0 or step == preset.steps_of(size):
            _progress.put(step - last[0])
            last[0] = step

    return train_size(preset, size, size_dir, ids, tokenizer, meta, seed, on_step)


def train_side_by_side(preset: Preset, sizes: list[ModelSize], out: Path, ids: np.ndarray,
                       tokenizer: PreTrainedTokenizerBase, meta: dict, seed: int, workers: int, total,
                       on_size: Callable[[SizeResult], None]) -> None:
    """Trains `sizes` in `workers` processes; `total` (a progress bar) advances by the steps they report.

    A size that fails raises its error here after the others finished (their folders are complete and
    a rerun resumes only what is missing).
    """
    context = multiprocessing.get_context("spawn")  # a forked child would inherit torch's thread pool
    progress = context.Queue()
    order = sorted(sizes, key=preset.steps_of, reverse=True)  # longest first
    errors = []
    with ProcessPoolExecutor(min(workers, len(sizes)), mp_context=context, initializer=_start_worker,
                             initargs=(progress, preset.threads)) as pool:
        pending = {pool.submit(_train_one, preset, size, out / size.name, ids, tokenizer, meta, seed)
                   for size in order}
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            _drain(progress, total)
            for future in done:
                if future.exception() is not None:
                    errors.append(future.exception())
                else:
                    on_size(future.result())
        _drain(progress, total)
    if errors:
        raise errors[0]


def _drain(progress: multiprocessing.Queue, total) -> None:
    while True:
        try:
            total.update(progress.get_nowait())
        except queue.Empty:
            return
