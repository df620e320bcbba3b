"""v2 build-time projection: 1-thread ms/step of the v1 (default) and v2 shapes, measured interleaved.

Each size's training step (forward, backward, clip, AdamW) at its preset's batch x seq_len and
vocabulary, best of 8 after 2 warm-up steps, v1 and v2 alternating so machine load hits both alike;
the ratio of summed step time (ms/step x that size's steps) carries v1's measured build time to v2.

    OMP_NUM_THREADS=1 python benchmarks/bench_v2_step_ratio.py
"""
from __future__ import annotations

import time

import torch
from transformers import GPTNeoXForCausalLM

from harness.zoo.presets import ModelSize, Preset, get_preset, model_config
from harness.zoo.train import _optimizer

V1_QUIET_MINUTES = 15
"""v1's default build on 2 quiet cores (README, "The built-in reference family")."""


def ms_per_step(preset: Preset, size: ModelSize, vocab: int, n: int = 8) -> float:
    """Best-of-`n` wall time of one training step, in ms."""
    model = GPTNeoXForCausalLM(model_config(size, vocab, 2, 0, preset.seq_len)).train()
    opt = _optimizer(model, preset, size)
    x = torch.randint(3, vocab, (preset.batch_size, preset.seq_len))
    times = []
    for _ in range(n + 2):
        t = time.perf_counter()
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        times.append(time.perf_counter() - t)
    return 1000 * min(times[2:])


def main() -> None:
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    v1, v2 = get_preset("v1"), get_preset("default")
    total1 = total2 = 0.0
    for a, b in zip(v1.sizes, v2.sizes):
        m1, m2 = ms_per_step(v1, a, 24), ms_per_step(v2, b, 32)
        total1 += m1 * v1.steps_of(a) / 1000
        total2 += m2 * v2.steps_of(b) / 1000
        print(f"{b.name}: v1 {m1:.1f} ms/step x {v1.steps_of(a)}, v2 {m2:.1f} ms/step x {v2.steps_of(b)}", flush=True)
    ratio = total2 / total1
    print(f"summed 1-thread step time: v1 {total1:.0f} s, v2 {total2:.0f} s, ratio {ratio:.2f}; "
          f"projected v2 build on 2 quiet cores: {V1_QUIET_MINUTES * ratio:.1f} min")


if __name__ == "__main__":
    main()
