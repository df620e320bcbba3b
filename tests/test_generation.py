"""Batched greedy generation equals one-row `model.generate` on tiny random models built from configs.

Batches mix context lengths (left padding after a cached shared prefix); finished rows leave the batch.
Outputs must equal batch-size-1 generation without any reuse except at near-ties (top-2 logits within
`NEAR_TIE`), which are counted.
"""
from __future__ import annotations

import pytest
import torch
from tiny_models import CORPUS, FEWSHOT, OTHER_FEWSHOT, QUESTIONS, count_forward_positions, make_tokenizer
from transformers import AttentionInterface, AutoConfig, AutoModelForCausalLM

from harness.model import generation as hf_generate
from harness.model.hf_model import HFModel, ModelSettings
from harness.model.protocol import GenerationRequest, LoglikelihoodRequest, truncate_at_stop
from harness.model.shared_prefix_attention import NAME, shared_prefix_attention

SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
         "max_position_embeddings": 256}
CONFIGS = {
    "gpt_neox": {**SMALL, "num_attention_heads": 2},
    "llama-gqa": {**SMALL, "num_key_value_heads": 2},
    "gemma": {**SMALL, "num_key_value_heads": 1, "head_dim": 8},
    "gpt2": {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 256},
}


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


def build(name: str, tokenizer):
    model_type = name.split("-")[0]
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), bos_token_id=0, eos_token_id=0,
                                  pad_token_id=1, **CONFIGS[name])
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


def requests_of_many_lengths() -> list[GenerationRequest]:
    """Two few-shot prefixes with questions of different lengths, plus unrelated short contexts."""
    shots = [GenerationRequest(f"{fewshot}Question: {q}? Answer:", ("\n",), limit)
             for fewshot in (FEWSHOT, OTHER_FEWSHOT) for q, limit in zip(QUESTIONS + ["a much longer question"],
                                                                          (9, 3, 12, 7, 10))]
    return shots + [GenerationRequest(c, (), 6) for c in CORPUS] + [GenerationRequest("", ("the",), 8)]


def one_row_reference(model, tokenizer, request: GenerationRequest) -> tuple[str, int, float]:
    """`model.generate` on one row without any reuse: text, token count (cut like the harness) and the
    smallest top-2 logit gap over the steps taken."""
    ids = tokenizer(request.context, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=request.max_new_tokens,
                             pad_token_id=1, eos_token_id=tokenizer.eos_token_id, output_logits=True,
                             return_dict_in_generate=True)
    new = out.sequences[0, len(ids):].tolist()
    n = len(new)
    for k in range(1, len(new) + 1):  # the harness stops at the first step whose text holds a stop string
        if request.stop and truncate_at_stop(tokenizer.decode(new[:k], skip_special_tokens=True), request.stop)[1]:
            n = k
            break
    gaps = [float(step[0].topk(2).values[0] - step[0].topk(2).values[1]) for step in out.logits[:n]]
    text, _ = truncate_at_stop(tokenizer.decode(new[:n], skip_special_tokens=True), request.stop)
    return text, n, min(gaps)


@pytest.mark.parametrize("prefill_rows", [8, 2], ids=["one-prefill", "prefill-in-chunks"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_batched_generation_equals_one_row_generate_except_near_ties(name, prefill_rows, tokenizer, monkeypatch):
    monkeypatch.setattr(hf_generate, "PREFILL_ROWS", prefill_rows)
    model = build(name, tokenizer)
    requests = requests_of_many_lengths()
    fast = HFModel(model, tokenizer, ModelSettings(batch_size=4, prefix_min_tokens=4))
    got = fast.generate_until(requests)
    assert fast.generation_verified_ and fast.left_padding_ok_ and fast.prefix_reuse_, fast.reuse_disabled_reason_
    assert fast.shared_attention_
    differing = 0
    for request, result in zip(requests, got):
        text, n, gap = one_row_reference(model, tokenizer, request)
        assert result.error is None
        if (result.text, result.n_tokens) != (text, n):
            differing += 1
            assert gap < hf_generate.NEAR_TIE, (request, result, text)
    assert differing <= fast.near_ties_


def test_shared_prefix_runs_once_and_finished_rows_stop_costing_compute(tokenizer):
    model = build("llama-gqa", tokenizer)
    requests = [GenerationRequest(f"{FEWSHOT}Question: {q}? Answer:", (), limit)
                for q, limit in zip(QUESTIONS, (2, 9, 4, 1))]
    fast = HFModel(model, tokenizer, ModelSettings(batch_size=4, prefix_min_tokens=4))
    fast.generate_until(requests)  # the one-time check runs a plain row: not counted below
    with count_forward_positions(model) as counts:
        got = fast.generate_until(requests)
    assert fast.prefix_reuse_ and [r.n_tokens for r in got] == [2, 9, 4, 1]
    contexts = [tokenizer(r.context, add_special_tokens=False)["input_ids"] for r in requests]
    shared = len(tokenizer(FEWSHOT + "Question: ", add_special_tokens=False)["input_ids"]) - 2
    suffix_width = max(len(c) for c in contexts) - shared
    # one prefix forward, one left-padded prefill of 4 rows, then one position per row still generating
    assert counts["positions"] <= (shared + 2) + 4 * (suffix_width + 2) + sum(r.n_tokens - 1 for r in got)


def test_a_model_that_ignores_position_ids_is_caught_and_generated_one_row_at_a_time(tokenizer, monkeypatch):
    model = build("gpt2", tokenizer)  # learned absolute positions: shifted positions change every logit
    requests = requests_of_many_lengths()
    reference = HFModel(model, tokenizer, ModelSettings(batch_size=1, prefix_reuse=False)).generate_until(requests)
    forward = model.forward

    def no_positions(*args, **kwargs):
        kwargs.pop("position_ids", None)
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", no_positions)
    fast = HFModel(model, tokenizer, ModelSettings(batch_size=4, prefix_min_tokens=4))
    got = fast.generate_until(requests)
    assert not fast.prefix_reuse_ and not fast.left_padding_ok_
    assert got == reference


def test_out_of_memory_halves_the_generation_batch(tokenizer, monkeypatch):
    model = build("gpt_neox", tokenizer)
    requests = requests_of_many_lengths()
    reference = HFModel(model, tokenizer, ModelSettings(batch_size=8, prefix_min_tokens=4)).generate_until(requests)
    forward = model.forward

    def small_batches_only(*args, **kwargs):
        if kwargs["input_ids"].shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", small_batches_only)
    fast = HFModel(model, tokenizer, ModelSettings(batch_size=8, prefix_min_tokens=4))
    assert fast.generate_until(requests) == reference and fast.batch_size_ <= 2


def test_progress_is_reported_per_batch_with_its_phase(tokenizer):
    model = build("gpt2", tokenizer)
    requests = requests_of_many_lengths()
    fast = HFModel(model, tokenizer, ModelSettings(batch_size=3, prefix_min_tokens=4))
    calls = []
    fast.progress = lambda phase, done, total: calls.append((phase, done, total))
    fast.generate_until(requests)
    assert {phase for phase, _, _ in calls} == {"generation"}
    assert [done for _, done, _ in calls] == sorted(done for _, done, _ in calls)
    assert len(calls) >= 1 + len(requests) // 3 and calls[-1][1:] == (len(requests), len(requests))
    calls.clear()
    fast.loglikelihood([LoglikelihoodRequest(r.context, " the cat") for r in requests])
    fast.loglikelihood_rolling(CORPUS)
    assert {phase for phase, _, _ in calls} == {"likelihood", "cross-entropy"}


def test_near_ties_are_counted(tokenizer, monkeypatch):
    model = build("gpt2", tokenizer)
    monkeypatch.setattr(hf_generate, "NEAR_TIE", float("inf"))  # every step is a near-tie
    fast = HFModel(model, tokenizer, ModelSettings(batch_size=4, prefix_min_tokens=4))
    fast.generate_until(requests_of_many_lengths())
    assert fast.near_ties_ == len(requests_of_many_lengths())


def test_a_stop_string_spanning_two_tokens_stops_the_row(tokenizer):
    model = build("gpt_neox", tokenizer)
    context = f"{FEWSHOT}Question: the dog? Answer:"
    ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        new = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=20, pad_token_id=1)[0, len(ids):]
    texts = [tokenizer.decode(new[:k].tolist()) for k in range(1, len(new) + 1)]
    # the first boundary whose last character before and first after form a string not seen before it
    k, stop = next((k, a[-1] + b[len(a)]) for k, (a, b) in enumerate(zip(texts, texts[1:]))
                   if len(b) > len(a) and a and (a[-1] + b[len(a)]) not in a)
    result, = HFModel(model, tokenizer, ModelSettings()).generate_until([GenerationRequest(context, (stop,), 20)])
    assert result.n_tokens == k + 2 and result.text == texts[k + 1][:texts[k + 1].index(stop)]


def test_stopped_says_whether_a_row_ended_at_a_stop_string_or_eos_or_the_token_limit(tokenizer):
    import copy

    model = build("gpt_neox", tokenizer)
    context = f"{FEWSHOT}Question: the dog? Answer:"
    ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        new = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=6, pad_token_id=1)[0, len(ids):]
    second = tokenizer.decode(new[:2].tolist())[len(tokenizer.decode(new[:1].tolist())):]
    assert second, "the second token must add text for a stop string"
    requests = [GenerationRequest(context, (), 4), GenerationRequest(context, (second,), 6),
                GenerationRequest(context, ("never appears \x00",), 3)]
    got = HFModel(model, tokenizer, ModelSettings(batch_size=4)).generate_until(requests)
    assert [r.stopped for r in got] == [False, True, False] and got[1].n_tokens == 2
    ends_at_eos = copy.deepcopy(tokenizer)
    ends_at_eos.eos_token = tokenizer.convert_ids_to_tokens(int(new[2]))  # the third greedy token is now EOS
    result, = HFModel(model, ends_at_eos, ModelSettings()).generate_until([GenerationRequest(context, (), 6)])
    assert result.stopped is True and result.n_tokens == 3
    failed, = HFModel(model, tokenizer, ModelSettings(max_length=8)).generate_until([requests[0]])
    assert failed.error and failed.stopped is None


def step_logprobs(fast: HFModel, requests: list[GenerationRequest]) -> tuple[list, list[torch.Tensor]]:
    """Results and the log-softmax of every forward's last-position logits (prefill chunks and decoding steps)."""
    seen: list[torch.Tensor] = []
    handle = fast.model.register_forward_hook(lambda m, a, out: seen.append(torch.log_softmax(out.logits[:, -1], -1)))
    try:
        return fast.generate_until(requests), seen
    finally:
        handle.remove()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_shared_prefix_attention_equals_a_prefix_copied_into_every_row_to_1e5(name, tokenizer, monkeypatch):
    model = build(name, tokenizer)
    requests = requests_of_many_lengths()
    calls = []
    monkeypatch.setitem(AttentionInterface._global_mapping, NAME,
                        lambda *a, **k: calls.append(1) or shared_prefix_attention(*a, **k))
    runs = {}
    for shared in (True, False):
        fast = HFModel(model, tokenizer, ModelSettings(batch_size=4, prefix_min_tokens=4, shared_attention=shared))
        fast.generate_until(requests)  # the one-time checks run plain rows: not compared below
        runs[shared] = step_logprobs(fast, requests)
        assert fast.shared_attention_ is shared and fast.prefix_reuse_
    assert runs[True][0] == runs[False][0]
    steps = list(zip(runs[True][1], runs[False][1]))
    assert len(runs[True][1]) == len(runs[False][1]) and calls
    assert max(float((a - b).abs().max()) for a, b in steps) <= 1e-5


def test_a_wrong_shared_prefix_attention_is_caught_and_the_prefix_copied_into_rows_instead(tokenizer, monkeypatch):
    model = build("llama-gqa", tokenizer)
    requests = requests_of_many_lengths()
    reference = HFModel(model, tokenizer, ModelSettings(batch_size=4, prefix_min_tokens=4, shared_attention=False))
    expected = reference.generate_until(requests)

    def forgets_the_prefix(module, query, key, value, mask, **kwargs):
        out, _ = shared_prefix_attention(module, query, key, value, mask, **kwargs)
        return out * 1.5, None

    monkeypatch.setitem(AttentionInterface._global_mapping, NAME, forgets_the_prefix)
    fast = HFModel(model, tokenizer, ModelSettings(batch_size=4, prefix_min_tokens=4))
    assert fast.generate_until(requests) == expected
    assert not fast.shared_attention_ and fast.prefix_reuse_ and fast.generation_verified_
