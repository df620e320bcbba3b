"""Bounds on the vocabulary logits and cached keys/values a CPU batch holds change batching, never a score."""
from __future__ import annotations

import torch
from tiny_models import CORPUS, make_tokenizer, mixed_prefix_requests
from transformers import AutoConfig, AutoModelForCausalLM

from harness.model import batching
from harness.model import memory_bounds
from harness.model.hf_model import HFModel, ModelSettings


def test_bounded_logits_leave_scores_unchanged_and_shrink_batches(monkeypatch):
    tokenizer = make_tokenizer()
    config = AutoConfig.for_model("llama", vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                                  max_position_embeddings=128, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    requests = mixed_prefix_requests()
    settings = ModelSettings(batch_size=8, prefix_min_tokens=4)
    free = HFModel(model, tokenizer, settings)
    expected, rolling = free.loglikelihood(requests), free.loglikelihood_rolling(CORPUS)
    sizes = []
    model.register_forward_pre_hook(lambda m, a, k: sizes.append((*k["input_ids"].shape, "logits_to_keep" in k)),
                                    with_kwargs=True)
    monkeypatch.setattr(batching, "CHUNK_LOGITS", 3 * len(tokenizer))
    monkeypatch.setattr(memory_bounds, "LOGITS_BUDGET", {"cpu": 40 * len(tokenizer)})
    monkeypatch.setattr(memory_bounds, "CACHE_BUDGET", {"cpu": 30 * memory_bounds.kv_floats_per_token(model.config)})
    bounded = HFModel(model, tokenizer, settings)
    got, got_rolling = bounded.loglikelihood(requests), bounded.loglikelihood_rolling(CORPUS)
    assert max(abs(a.logprob - b.logprob) for a, b in zip(got, expected)) < 1e-5  # batch shapes change float sums only
    assert [a.is_greedy for a in got] == [b.is_greedy for b in expected]
    assert max(abs(a.logprob - b.logprob) for a, b in zip(got_rolling, rolling)) < 1e-5
    scored = [(rows, width) for rows, width, one_row_of_logits in sizes if not one_row_of_logits]
    assert max(rows * width for rows, width in scored if rows > 1) <= 40
    assert bounded.reuse_verified_ and bounded.packing_verified_  # the bounds left both shortcuts on


def test_bounded_generation_cache_leaves_outputs_unchanged_and_shrinks_batches(monkeypatch):
    from test_generation import build, requests_of_many_lengths

    from harness.model import generation as hf_generate

    tokenizer = make_tokenizer()
    model = build("llama-gqa", tokenizer)
    requests = requests_of_many_lengths()
    settings = ModelSettings(batch_size=8, prefix_min_tokens=4)
    expected = HFModel(model, tokenizer, settings).generate_until(requests)
    rows = []
    model.register_forward_pre_hook(lambda m, a, k: rows.append(k["input_ids"].shape[0]), with_kwargs=True)
    per_token = memory_bounds.kv_floats_per_token(model.config)
    longest = max(len(tokenizer(r.context)["input_ids"]) + r.max_new_tokens for r in requests)
    monkeypatch.setattr(hf_generate, "CACHE_BUDGET", {"cpu": 2 * per_token * longest})
    assert HFModel(model, tokenizer, settings).generate_until(requests) == expected
    assert max(rows) == 2
