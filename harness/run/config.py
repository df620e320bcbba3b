"""The one frozen run configuration: it becomes the CLI flags and the run manifest.

A run can be reproduced from its manifest alone (`RunConfig.from_manifest`). Settings that must not
change any number (batch size, device) are left out of the run's identity, so changing them resumes
the same run instead of starting another.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from skill_catalog.errors import UserError

DEFAULT_TASKS = ("symbolic_v2_composite.yaml", "symbolic_v2_shots.yaml", "symbolic_v2_heldout_text.yaml")
"""Suites of the main job (under tasks/): those of the shipped reference family v2."""
NOT_IDENTITY = ("out", "batch_size", "device", "device_map", "fail_fast", "check_drift", "cache_dir", "analyze",
                "plain_scoring")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; every field is a CLI flag of `emergence run`."""

    family: tuple[str, ...] = ()
    """Family manifests, checkpoint folders, globs or GGUF files; empty = the built-in reference family."""
    tasks: tuple[str, ...] = DEFAULT_TASKS
    """Task files (paths or names under tasks/)."""
    out: str = "results"
    """Folder that receives the run directory (named by the run's hash)."""
    batch_size: str = "auto"
    """Rows per forward pass or ``auto`` (halves on out-of-memory); never changes a number."""
    limit: int | None = None
    """Score only the first N items of each (k, mode, split) cell of each composite task, so every k is still
    covered (smoke runs); N is per cell, not per task."""
    device: str = "auto"
    """``auto`` (cuda when available, else cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; checked before anything loads."""
    dtype: str = "float32"
    """Compute dtype: float32, bfloat16 or float16 (on CPU where its kernels exist); GGUF is de-quantized to it."""
    device_map: str | None = None
    """``auto``: accelerate spreads a checkpoint larger than one GPU over the GPUs, CPU memory and disk."""
    max_length: int | None = None
    """Longest model input per row (default: the model's own context, from its config); longer prompts are NaN
    with a reason."""
    chat_template: bool = False
    """Wrap every prompt in the tokenizer's own chat template (instruct models); part of the run's identity."""
    bos: str = "auto"
    """Start every context with the BOS token: ``auto`` (Gemma family, or a tokenizer that adds BOS), ``always``
    or ``never``; each checkpoint's resolved policy is recorded in checkpoints.parquet and the manifest."""
    allow_pickle: bool = False
    """Accept pickle weight files (loading one can execute code); recorded in the manifest."""
    check_drift: bool = False
    """Rescore a sample at batch size 1 and record the largest difference."""
    plain_scoring: bool = False
    """Run every row from its first token: no prefix reuse, no tree packing (same numbers within 1e-5, slower)."""
    fail_fast: bool = False
    """Stop at the first failure of any kind (a path that cannot be resolved, a checkpoint that fails to load or
    score) instead of recording it and going on."""
    shard: str = "1/1"
    """``i/n``: score only the i-th of n slices of the checkpoint grid (cluster array jobs)."""
    cache_dir: str | None = None
    """Folder of the shared result cache; default ``$EMERGENCE_CACHE_DIR`` or the user cache."""
    analyze: bool = True
    """After scoring, run the analysis and write the report (on by default; --no-analyze scores only)."""

    def shard_index(self) -> tuple[int, int]:
        """The (i, n) of `shard`, 1-based i, validated."""
        try:
            i, n = (int(x) for x in self.shard.split("/"))
        except ValueError:
            raise UserError(f"--shard {self.shard!r} is not i/n; write e.g. --shard 2/4") from None
        if not 1 <= i <= n:
            raise UserError(f"--shard {self.shard!r} needs 1 <= i <= n; write e.g. --shard 2/4")
        return i, n

    def to_dict(self) -> dict:
        """JSON-ready fields (for the manifest)."""
        return asdict(self)

    @classmethod
    def from_manifest(cls, path: Path) -> RunConfig:
        """The configuration recorded in a run's ``manifest.json``."""
        data = json.loads(Path(path).read_text())["config"]
        names = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names})


def run_id(config: RunConfig, checkpoint_ids: list[str], task_hashes: list[str]) -> str:
    """Short hash naming a run: what is measured (weights, tasks, limits), not how fast."""
    identity = {k: v for k, v in config.to_dict().items() if k not in NOT_IDENTITY and k != "family"}
    payload = {"config": identity, "checkpoints": sorted(checkpoint_ids), "tasks": task_hashes}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
