"""Forwards of rows of different lengths split where padding would waste positions, with unchanged results."""
from __future__ import annotations

import random

import torch
from test_generation import build
from tiny_models import FEWSHOT, OTHER_FEWSHOT, count_forward_positions, make_tokenizer

from harness.model.batching import PAD_SLACK, low_padding_chunks
from harness.model.hf_model import HFModel, ModelSettings


def test_low_padding_chunks_cover_rows_in_order_with_bounded_padding():
    rng = random.Random(0)
    for _ in range(200):
        lengths = sorted((rng.randint(1, 400) for _ in range(rng.randint(0, 40))), reverse=rng.random() < 0.5)
        most = rng.randint(1, 12)
        chunks = low_padding_chunks(lengths, most)
        assert [i for c in chunks for i in c] == list(range(len(lengths)))
        for c in chunks:
            part = lengths[c.start:c.stop]
            padded = max(part) * len(part)
            assert 1 <= len(part) <= most
            assert len(part) == 1 or padded - sum(part) <= PAD_SLACK * padded
        # a chunk ends early only where the next row would break the bound
        for c, after in zip(chunks, chunks[1:]):
            if len(c) < most:
                part = lengths[c.start:after.start + 1]
                assert max(part) * len(part) - sum(part) > PAD_SLACK * max(part) * len(part)


def test_prefix_caches_of_different_lengths_equal_one_at_a_time_and_skip_the_padding():
    tokenizer = make_tokenizer()
    model = build("llama-gqa", tokenizer)
    scorer = HFModel(model, tokenizer, ModelSettings(batch_size=8))
    short = tuple(tokenizer("Question: the", add_special_tokens=False)["input_ids"])
    long = tuple(tokenizer(FEWSHOT + OTHER_FEWSHOT + FEWSHOT, add_special_tokens=False)["input_ids"])
    assert len(long) > 4 * len(short)
    with count_forward_positions(model) as counts:
        together = scorer._window_caches([short, long])
    assert counts["positions"] == len(short) + len(long)  # not 2 x len(long)
    for slot, prefix in enumerate((short, long)):
        alone = scorer._window_caches([prefix])
        for (k, v), (k1, v1) in zip(together, alone):
            n = len(prefix)
            torch.testing.assert_close(k[slot, :, :n], k1[0, :, :n], rtol=0, atol=1e-6)
            torch.testing.assert_close(v[slot, :, :n], v1[0, :, :n], rtol=0, atol=1e-6)
