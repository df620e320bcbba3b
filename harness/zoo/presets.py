"""Presets of the reference family: model sizes, optimisation schedule and checkpoint steps.

The `v1` preset (the first shipped family) follows the recipe measured on 2 CPU cores
(shared/reference-family-recipe.md):
GPT-NeoX models of 27K-1M parameters, AdamW, 5% warmup then cosine to 10%, batch 16 x 128 tokens,
4 000 steps (the recipe's 2 540 left the 1M model behind the 450K one on held-out conjunctions), one
data order for every size. Measured changes: 4K and 7K models extend the size range below the
recipe's smallest (whose single-skill accuracy reached 0.6 at 4 000 steps), and the 1M model uses a
peak lr of 2e-3 (at 3e-3 its loss stayed noisy and ended above the 450K model's).

The `default` preset (reference family v2, shipped since v2) trains on the ``symbolic_v2`` text (16 skills, held-out
pairs, 1..8 answer slots) with windows long enough for 2-shot prompts at k = 8, and sets steps and
learning rate per size by one rule (`scaled_sizes`), so that final loss falls strictly with size.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from transformers import GPTNeoXConfig

from skill_catalog.errors import UserError


@dataclass(frozen=True)
class ModelSize:
    """One model size of a family."""

    name: str
    """Short label, e.g. ``"n400k"`` (the folder name)."""
    d_model: int
    """Hidden size."""
    n_layers: int
    """Transformer blocks."""
    n_heads: int
    """Attention heads."""
    peak_lr: float
    """Peak learning rate after warmup."""
    steps: int = 0
    """Optimizer steps of this size; 0: the preset's `steps`."""


@dataclass(frozen=True)
class Preset:
    """A family to train: sizes plus one shared schedule and data order."""

    name: str
    """Preset name."""
    sizes: tuple[ModelSize, ...]
    """Model sizes, smallest first."""
    steps: int
    """Optimizer steps per size."""
    batch_size: int = 16
    """Sequences per step."""
    seq_len: int = 128
    """Tokens per sequence (pieces are packed across window boundaries)."""
    warmup_frac: float = 0.05
    """Fraction of steps of linear warmup."""
    final_lr_frac: float = 0.10
    """Cosine decay ends at this fraction of the peak learning rate."""
    weight_decay: float = 0.01
    """AdamW weight decay, applied to matrices only."""
    n_log_checkpoints: int = 2
    """Log-spaced early checkpoints (powers of 4 from 64), as in Pythia's step1, 2, 4, ..."""
    n_even_checkpoints: int = 4
    """Evenly spaced checkpoints, the last one being the final step."""
    save_dtype: str = "float16"
    """Dtype of the saved weights (float16 keeps the shipped family small)."""
    device: str = "cpu"
    """``"cpu"``, or ``"auto"`` to use CUDA with bf16 autocast when present."""
    threads: int = 2
    """CPU threads of the training loop; weights are bit-reproducible only at the same count."""
    skill_set: str = "symbolic"
    """Skill set of the training text and tokenizer (`training_text.text_spec_for` gives its generator)."""

    @property
    def tokens_per_step(self) -> int:
        """Tokens consumed by one optimizer step."""
        return self.batch_size * self.seq_len

    def steps_of(self, size: ModelSize) -> int:
        """Optimizer steps of one size (its own, else the preset's)."""
        return size.steps or self.steps

    @property
    def max_steps(self) -> int:
        """Steps of the longest-trained size (the shared token stream must cover it)."""
        return max(self.steps_of(s) for s in self.sizes)

    def checkpoint_steps(self, steps: int | None = None) -> tuple[int, ...]:
        """Steps at which a checkpoint folder is saved for a run of `steps` (default: the preset's), final included."""
        steps = steps or self.steps
        logs = [64 * 4**i for i in range(self.n_log_checkpoints) if 64 * 4**i < steps // self.n_even_checkpoints]
        evens = [round(steps * j / self.n_even_checkpoints) for j in range(1, self.n_even_checkpoints + 1)]
        return tuple(sorted({step for step in logs + evens if step >= 1}))  # short runs round some to 0

    def lr_at(self, step: int, peak: float, steps: int | None = None) -> float:
        """Learning rate for optimizer step `step` (0-based) of a run of `steps`: linear warmup, then cosine."""
        steps = steps or self.steps
        warmup = max(1, round(self.warmup_frac * steps))
        if step < warmup:
            return peak * (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        floor = self.final_lr_frac * peak
        return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def model_config(size: ModelSize, vocab_size: int, eos_id: int, pad_id: int, max_positions: int) -> GPTNeoXConfig:
    """The Pythia-style config of one size: rotary on all dims, parallel residual, untied, no dropout.

    `max_positions` is the training sequence length: rotary models do not extrapolate beyond the
    positions they were trained on, so the config must not invite longer evaluation windows.
    """
    return GPTNeoXConfig(
        vocab_size=vocab_size, hidden_size=size.d_model, num_hidden_layers=size.n_layers,
        num_attention_heads=size.n_heads, intermediate_size=4 * size.d_model, rotary_pct=1.0,
        use_parallel_residual=True, tie_word_embeddings=False, hidden_dropout=0.0, attention_dropout=0.0,
        max_position_embeddings=max_positions, bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=pad_id,
    )


N4K = ModelSize("n4k", 16, 1, 2, 6e-3)
N7K = ModelSize("n7k", 16, 2, 2, 6e-3)
N20K = ModelSize("n20k", 32, 2, 2, 6e-3)
N60K = ModelSize("n60k", 48, 2, 3, 6e-3)
N150K = ModelSize("n150k", 64, 3, 4, 4e-3)
N400K = ModelSize("n400k", 96, 4, 4, 3e-3)
N1M = ModelSize("n1m", 128, 5, 4, 1e-3)

def preset_fields(preset: Preset) -> dict:
    """The preset as a dict without fields added for v2 at their v1 values, so v1 build identities never change."""
    fields = asdict(preset)
    if fields["skill_set"] == "symbolic":
        del fields["skill_set"]
    for size in fields["sizes"]:
        if size["steps"] == 0:
            del size["steps"]
    return fields


def approx_params(d_model: int, n_layers: int, vocab_size: int = 32) -> int:
    """Parameters of a `model_config` model: 12 d^2 + 13 d per block, untied embeddings, final norm."""
    return n_layers * (12 * d_model**2 + 13 * d_model) + 2 * vocab_size * d_model + 2 * d_model


def scaled_sizes(shapes: tuple[tuple[str, int, int, int], ...], max_steps: int, step_exponent: float = 0.25,
                 lr_ref: float = 6e-3, d_ref: int = 32) -> tuple[ModelSize, ...]:
    """Sizes with steps and peak lr set by one rule, so that final loss falls strictly with size.

    Steps grow with parameters N as ``max_steps * (N / N_max) ** step_exponent`` (rounded to 100): every
    size reads a prefix of the same stream, and a larger model never gets less data than a smaller one,
    so it cannot end above it for want of training (v1's 1M model ended above its 450K one at equal
    steps). Peak lr is ``lr_ref * sqrt(d_ref / d)``, capped at `lr_ref`: the recipe's measured 6e-3
    (d <= 48), 4e-3 (d = 64) and 3e-3 (d = 96) lie on it.

    Args:
        shapes: (name, d_model, layers, heads) per size, smallest first.
        max_steps: steps of the largest size.
        step_exponent: how steps scale with parameters (0: equal steps; 1: compute-proportional tokens).
        lr_ref: peak lr at `d_ref` and below.
        d_ref: width up to which `lr_ref` applies.
    """
    n_max = max(approx_params(d, n) for _, d, n, _ in shapes)
    return tuple(
        ModelSize(name, d, n, h, round(min(lr_ref, lr_ref * math.sqrt(d_ref / d)), 5),
                  max(100, round(max_steps * (approx_params(d, n) / n_max) ** step_exponent / 100) * 100))
        for name, d, n, h in shapes
    )


V2_SHAPES = (("n4k", 16, 1, 2), ("n7k", 16, 2, 2), ("n20k", 32, 2, 2), ("n60k", 48, 2, 3), ("n150k", 64, 3, 4),
             ("n400k", 96, 4, 4), ("n1m", 128, 5, 4))
"""v2 sizes (name, d_model, layers, heads): v1's seven, 5K-1M parameters with the v2 vocabulary."""
V2_SEQ_LEN = 320
"""Window of v2: the longest 2-shot k = 8 prompt of the v2 suite (289 tokens with its answer) plus 48
generated tokens fits (tests/test_zoo_v2.py)."""

PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", (N20K, N60K), steps=200, n_log_checkpoints=1, n_even_checkpoints=2, save_dtype="float32",
                   threads=1),
    "default": Preset("default", scaled_sizes(V2_SHAPES, max_steps=5000), steps=5000, batch_size=8,
                      seq_len=V2_SEQ_LEN, skill_set="symbolic_v2", threads=1),
    "v2-tiny": Preset("v2-tiny", scaled_sizes(V2_SHAPES[2:4], max_steps=200), steps=200, batch_size=4,
                      seq_len=V2_SEQ_LEN, n_log_checkpoints=1, n_even_checkpoints=2, save_dtype="float32", threads=1,
                      skill_set="symbolic_v2"),
    "v1": Preset("v1", (N4K, N7K, N20K, N60K, N150K, N400K, N1M), steps=4000),
    "large": Preset(
        "large",
        (
            ModelSize("n1m", 128, 5, 4, 3e-3),
            ModelSize("n6m", 256, 8, 8, 2e-3),
            ModelSize("n25m", 512, 8, 8, 1e-3),
            ModelSize("n100m", 768, 14, 12, 6e-4),
        ),
        steps=20_000, batch_size=64, seq_len=V2_SEQ_LEN, n_log_checkpoints=4, n_even_checkpoints=8,
        save_dtype="float32", device="auto", skill_set="symbolic_v2",
    ),
}
"""`default` is reference family v2 (shipped; `v2-tiny` is its 2-size test cut); `v1` and `tiny` keep the
first family's recipe and text (``symbolic``, 8 skills) for comparison and fast tests."""


def get_preset(name: str) -> Preset:
    """A preset by name, or a one-line error listing the known ones."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; use one of: {', '.join(PRESETS)}")
    return PRESETS[name]
