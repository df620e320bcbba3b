"""How a transformers checkpoint is loaded and scored: device, dtype, batch size, shortcuts, BOS policy."""
from __future__ import annotations

from dataclasses import dataclass

BOS_POLICIES = ("auto", "always", "never")
"""Values of `ModelSettings.bos`."""


@dataclass(frozen=True)
class ModelSettings:
    """How a checkpoint is loaded and run."""

    device: str = "auto"
    """``"auto"`` (cuda if available, else cpu), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ..."""
    dtype: str = "float32"
    """``"float32"``, ``"bfloat16"`` or ``"float16"`` (on CPU too, where its kernels exist)."""
    batch_size: int | str = "auto"
    """Rows per forward pass, or ``"auto"``; halved on out-of-memory either way."""
    max_length: int | None = None
    """Maximum model inputs per row and cross-entropy window; None reads the limit from the model config and
    caps windows at `DEFAULT_WINDOW`."""
    device_map: str | None = None
    """``"auto"``: accelerate spreads a model larger than one device over GPUs, CPU and disk; None: one device."""
    max_memory: tuple[tuple[str | int, str], ...] | None = None
    """Memory per device for the device map, e.g. ``((0, "70GiB"), ("cpu", "100GiB"))``; None: accelerate measures."""
    offload_folder: str | None = None
    """Folder for layers the device map puts on disk."""
    bos: str = "auto"
    """Start every context with BOS: ``"always"``, ``"never"``, or ``"auto"`` (`bos_policy`)."""
    prefix_reuse: bool = True
    """Compute the key/value cache of a shared prefix once per group of rows."""
    prefix_min_tokens: int = 16
    """Shortest shared prefix worth reusing."""
    tree_packing: bool = True
    """Run rows that share leading tokens (the choices of an item) as one tree-masked row; checked once per
    model against plain rows and turned off, with a warning, where they differ."""
    shared_attention: bool = True
    """In generation, rows continuing a cached prefix read it once per step through one batched attention over
    it instead of a copy each (models with plain attention layers only; checked once against a plain forward)."""
    allow_pickle: bool = False
    """Load pickle weight files (they can run code); only for trusted checkpoints."""
