"""Tree packing in HFModel's scoring path: packed rows equal plain rows, a packing that changes scores is turned
off, and memory limits shrink the packed batches (tiny models built from configs)."""
from __future__ import annotations

import pytest
import torch
from tiny_models import (ANSWERS, CORPUS, QUESTIONS, choice_requests, count_forward_positions, direct, encode,
                         mixed_prefix_requests)

from harness.model.hf_model import HFModel, ModelSettings
from harness.model.protocol import LoglikelihoodRequest


@pytest.mark.parametrize("arch", ["neox", "gpt2", "llama"])
def test_tree_packing_equals_plain_rows(models_dir, arch):
    packed = HFModel.from_checkpoint(models_dir[arch], ModelSettings(batch_size=3, prefix_min_tokens=4))
    requests = mixed_prefix_requests()
    packed.loglikelihood(requests)  # the one-time check that packing reproduces plain rows runs here
    with count_forward_positions(packed.model) as counts:
        got = packed.loglikelihood(requests)
    assert packed.packing_ and packed.packing_verified_, packed.packing_disabled_reason_
    plain_model = HFModel(packed.model, packed.tokenizer, ModelSettings(batch_size=3, tree_packing=False))
    with count_forward_positions(packed.model) as plain_counts:
        plain = plain_model.loglikelihood(requests)
    assert max(abs(a.logprob - b.logprob) for a, b in zip(got, plain)) < 1e-5
    assert [a.is_greedy for a in got] == [b.is_greedy for b in plain]
    assert [a.n_tokens for a in got] == [b.n_tokens for b in plain]
    for request, result in zip(requests[::5], got[::5]):
        whole = encode(packed, request.context + request.continuation)
        assert abs(result.logprob - direct(packed.model, whole, len(encode(packed, request.context)))[0]) < 1e-5
    assert counts["positions"] < plain_counts["positions"]  # the choices' shared contexts ran once


def test_packing_that_changes_scores_is_turned_off_and_plain_rows_are_used(neox, monkeypatch):
    import harness.model.forward_engine as engine

    real = engine.tree_inputs

    def causal_instead_of_tree(packed, prefix_lens, pad_token, dtype, device):
        ids, positions, mask = real(packed, prefix_lens, pad_token, dtype, device)
        width = ids.shape[1]
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        mask[:, :, :, -width:] = torch.zeros(width, width).masked_fill_(~causal, torch.finfo(dtype).min)
        return ids, positions, mask

    monkeypatch.setattr(engine, "tree_inputs", causal_instead_of_tree)
    model = HFModel(neox.model, neox.tokenizer, ModelSettings(batch_size=4, prefix_min_tokens=4))
    results = model.loglikelihood(mixed_prefix_requests())
    assert not model.packing_ and "tree packing changed log-probs" in model.packing_disabled_reason_
    reference = HFModel(neox.model, neox.tokenizer, ModelSettings(tree_packing=False)).loglikelihood(
        mixed_prefix_requests())
    assert max(abs(a.logprob - b.logprob) for a, b in zip(results, reference)) < 1e-5


def test_out_of_memory_holding_prefix_caches_scores_fewer_groups_at_a_time(neox, monkeypatch):
    import harness.model.forward_engine as engine

    real = engine.stack_caches
    held = []

    def one_prefix_at_most(parts, length):
        held.append(sum(part[0][0].shape[0] for part in parts))
        if held[-1] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(parts, length)

    # two groups with different shared prefixes (their first tokens differ)
    requests = choice_requests() + [LoglikelihoodRequest(f"the cat sat on the mat. {q}?", a)
                                    for q in QUESTIONS for a in ANSWERS]
    monkeypatch.setattr(engine, "stack_caches", one_prefix_at_most)
    model = HFModel(neox.model, neox.tokenizer, ModelSettings(batch_size=8, prefix_min_tokens=4))
    results = model.loglikelihood(requests)
    assert max(held) > 1 and held[-1] == 1 and model.packing_verified_
    reference = HFModel(neox.model, neox.tokenizer, ModelSettings(tree_packing=False)).loglikelihood(requests)
    assert max(abs(a.logprob - b.logprob) for a, b in zip(results, reference)) < 1e-5


def test_wide_packed_rows_are_batched_by_tokens_not_rows(neox, monkeypatch):
    import harness.model.forward_engine as engine

    requests = [LoglikelihoodRequest(f"{c} {q} {n}?", a) for c in CORPUS for q in QUESTIONS for n in range(8)
                for a in ANSWERS]
    forward, shapes = neox.model.forward, []

    def recording(*args, **kwargs):
        if kwargs.get("attention_mask") is not None and kwargs["attention_mask"].dim() == 4:
            shapes.append(tuple(kwargs["input_ids"].shape))
        return forward(*args, **kwargs)

    models = {floor: HFModel(neox.model, neox.tokenizer, ModelSettings(batch_size=8, prefix_min_tokens=4))
              for floor in (10_000, 1)}  # built before forward is wrapped: they read its signature
    monkeypatch.setattr(neox.model, "forward", recording)
    rows_per_batch = {}
    for floor, model in models.items():  # rows short enough to batch freely; every packed row counted by its tokens
        monkeypatch.setattr(engine, "ROW_TOKENS_FLOOR", floor)
        shapes.clear()
        results = model.loglikelihood(requests)
        assert model.packing_verified_
        rows_per_batch[floor] = max(rows for rows, _ in shapes)
        plain = max(len(encode(neox, r.context + r.continuation)) for r in requests)
        if floor == 1:  # no batch holds more tokens than 8 of the longest plain rows
            assert all(rows * width <= 8 * plain for rows, width in shapes[1:])
    monkeypatch.setattr(neox.model, "forward", forward)
    assert rows_per_batch[10_000] == 8 and rows_per_batch[1] < 8
    reference = HFModel(neox.model, neox.tokenizer, ModelSettings(tree_packing=False)).loglikelihood(requests)
    assert max(abs(a.logprob - b.logprob) for a, b in zip(results, reference)) < 1e-5
