"""HFModel against direct transformers forward passes on tiny models built from configs in tmp_path."""
from __future__ import annotations

import math
import random
import socket

import pytest
import torch
from tiny_models import CORPUS, choice_requests, direct, encode, make_tokenizer, mixed_prefix_requests, write_llama_gguf
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from harness.model.batching import merge_rows, prefix_groups
from harness.checkpoints.discovery import discover
from harness.model.hf_model import HFModel, ModelSettings
from harness.model.protocol import (GenerationRequest, LanguageModel, LoglikelihoodRequest, encode_pair, rolling_windows,
                           truncate_at_stop)
from skill_catalog.errors import UserError


def test_hf_model_satisfies_the_protocol(neox):
    assert isinstance(neox, LanguageModel)


def test_loglikelihood_equals_direct_forward(neox):
    requests = choice_requests() + [LoglikelihoodRequest("hello", " world, said the dog")]
    results = neox.loglikelihood(requests)
    for request, result in zip(requests, results):
        whole = encode(neox, request.context + request.continuation)
        n_context = len(encode(neox, request.context))
        expected, greedy = direct(neox.model, whole, n_context)
        assert result.error is None
        assert result.n_tokens == len(whole) - n_context
        assert abs(result.logprob - expected) < 1e-5
        assert result.is_greedy == greedy


def test_multi_token_continuation_sums_every_token(neox):
    result, = neox.loglikelihood([LoglikelihoodRequest("the cat", " sat on the mat")])
    singles = []
    ids = encode(neox, "the cat sat on the mat")
    n_context = len(encode(neox, "the cat"))
    for k in range(n_context, len(ids)):
        singles.append(direct(neox.model, ids[: k + 1], k)[0])
    assert result.n_tokens == len(ids) - n_context > 1
    assert abs(result.logprob - sum(singles)) < 1e-5


def test_trailing_whitespace_moves_to_continuation(neox):
    requests = [LoglikelihoodRequest("the cat ", "sat"), LoglikelihoodRequest("the cat", " sat")]
    moved, plain = neox.loglikelihood(requests)
    assert moved == plain
    pair = encode_pair(lambda s: encode(neox, s), "the cat ", "sat", 0)
    assert pair.context == encode(neox, "the cat")
    assert pair.context + pair.continuation == encode(neox, "the cat sat")


def test_empty_context_uses_eos_prefix_without_bos(neox):
    assert neox.tokenizer.bos_token_id is None
    result, = neox.loglikelihood([LoglikelihoodRequest("", "hello world")])
    ids = [neox.tokenizer.eos_token_id] + encode(neox, "hello world")
    assert abs(result.logprob - direct(neox.model, ids, 1)[0]) < 1e-5


def test_empty_context_uses_bos_prefix_when_present(neox):
    tokenizer = make_tokenizer(bos=True)
    model = HFModel(neox.model, tokenizer, ModelSettings())
    assert tokenizer.bos_token_id not in (None, tokenizer.eos_token_id)
    result, = model.loglikelihood([LoglikelihoodRequest("", "hello")])
    ids = [tokenizer.bos_token_id] + tokenizer("hello", add_special_tokens=False)["input_ids"]
    assert abs(result.logprob - direct(neox.model, ids, 1)[0]) < 1e-5


def test_failures_are_nan_with_reason_not_zero(neox):
    short = HFModel(neox.model, neox.tokenizer, ModelSettings(max_length=8))
    too_long, empty = short.loglikelihood([LoglikelihoodRequest("the cat sat on the mat", " and the dog said hello"),
                                           LoglikelihoodRequest("the cat", "")])
    assert math.isnan(too_long.logprob) and "too long" in too_long.error and too_long.n_tokens > 0
    assert math.isnan(empty.logprob) and "no tokens" in empty.error


def test_nan_logits_fail_only_their_request(neox, models_dir):
    model = AutoModelForCausalLM.from_pretrained(models_dir["neox"])
    poisoned = encode(neox, "dog")[-1]
    with torch.no_grad():
        model.get_input_embeddings().weight[poisoned] = float("nan")
    wrapped = HFModel(model, neox.tokenizer, ModelSettings(batch_size=8))
    bad, good = wrapped.loglikelihood([LoglikelihoodRequest("hello world, said the dog", " sat"),
                                       LoglikelihoodRequest("the cat", " sat")])
    assert math.isnan(bad.logprob) and "non-finite" in bad.error
    reference, = neox.loglikelihood([LoglikelihoodRequest("the cat", " sat")])
    assert good.error is None and abs(good.logprob - reference.logprob) < 1e-5


def test_rolling_windows_match_lm_eval_gold():
    windows = rolling_windows(list(range(34)), prefix_token=-100, max_length=10)
    assert windows == [([-100], list(range(10))), ([9], list(range(10, 20))), ([19], list(range(20, 30))),
                       (list(range(23, 30)), [30, 31, 32, 33])]


def test_rolling_windows_score_every_token_exactly_once():
    tokens = list(range(100, 157))
    for max_length in (1, 5, 16, 56, 57, 100):
        windows = rolling_windows(tokens, -1, max_length)
        assert [t for w in windows for t in w.targets] == tokens
        stream = [-1] + tokens
        for w in windows:
            assert len(w.context) + len(w.targets) - 1 <= max_length
            start = tokens.index(w.targets[0]) + 1  # position in `stream`
            assert stream[start - len(w.context):start + len(w.targets)] == w.context + w.targets


def test_rolling_short_text_equals_full_sequence_with_prefix(neox):
    text = "the cat sat on the mat"
    result, = neox.loglikelihood_rolling([text])
    ids = encode(neox, text)
    expected, _ = direct(neox.model, [neox.tokenizer.eos_token_id] + ids, 1)
    assert result.n_tokens == len(ids) and result.n_bytes == len(text.encode())
    assert abs(result.logprob - expected) < 1e-5


def test_rolling_long_text_scores_every_token_once(neox):
    text = " ".join(CORPUS * 3)
    short = HFModel(neox.model, neox.tokenizer, ModelSettings(max_length=16, batch_size=4))
    result, = short.loglikelihood_rolling([text])
    ids = encode(neox, text)
    assert len(ids) > 3 * 16
    expected = 0.0
    for window in rolling_windows(ids, neox.tokenizer.eos_token_id, 16):
        expected += direct(neox.model, window.context + window.targets, len(window.context))[0]
    assert result.n_tokens == len(ids) and result.error is None
    assert abs(result.logprob - expected) < 1e-4


@pytest.mark.parametrize("arch", ["neox", "gpt2", "llama"])
def test_prefix_reuse_equals_no_reuse(models_dir, arch):
    model = HFModel.from_checkpoint(models_dir[arch], ModelSettings(batch_size=5, prefix_min_tokens=4))
    requests = choice_requests() + [LoglikelihoodRequest("hello", " world")]
    reused = model.loglikelihood(requests)
    assert model.prefix_reuse_ and model.reuse_verified_, model.reuse_disabled_reason_
    plain = model._loglikelihood(requests, batch_size=1, reuse=False)
    assert max(abs(a.logprob - b.logprob) for a, b in zip(reused, plain)) < 1e-5
    assert [a.is_greedy for a in reused] == [b.is_greedy for b in plain]


def test_unsafe_prefix_cache_falls_back_to_no_reuse(neox, monkeypatch):
    import harness.model.forward_engine as engine

    monkeypatch.setattr(engine, "unsafe_cache_reason", lambda cache: "pretend sliding window")
    model = HFModel(neox.model, neox.tokenizer, ModelSettings(prefix_min_tokens=4))
    results = model.loglikelihood(choice_requests())
    assert not model.prefix_reuse_ and "sliding" in model.reuse_disabled_reason_
    assert max(abs(a.logprob - b.logprob) for a, b in zip(results, neox.loglikelihood(choice_requests()))) < 1e-5


def test_rows_and_prefix_groups_are_exact_partitions():
    rows, row_of = merge_rows([(1, 2, 3), (1, 2), (1, 2, 3), (4,), (1, 2, 4)])
    assert rows == [(1, 2, 3), (1, 2, 4), (4,)] and row_of == [0, 0, 0, 2, 1]
    groups = prefix_groups([(1, 2, 3, 9), (1, 2, 3, 8), (5, 6)], [3, 3, 1], 2)
    assert groups == [(0, [2]), (3, [0, 1])]


def test_scores_do_not_depend_on_batch_size_or_order(neox):
    requests = choice_requests() + [LoglikelihoodRequest(c, " the") for c in CORPUS]
    by_size = {}
    for size in (1, 3, 16):
        model = HFModel(neox.model, neox.tokenizer, ModelSettings(batch_size=size, prefix_min_tokens=4))
        by_size[size] = [r.logprob for r in model.loglikelihood(requests)]
    shuffled = list(range(len(requests)))
    random.Random(1).shuffle(shuffled)
    again = neox.loglikelihood([requests[i] for i in shuffled])
    for i, result in zip(shuffled, again):
        assert abs(result.logprob - by_size[16][i]) < 1e-5
    assert max(abs(a - b) for a, b in zip(by_size[1], by_size[3])) < 1e-5
    assert max(abs(a - b) for a, b in zip(by_size[1], by_size[16])) < 1e-5
    assert neox.drift(requests) < 1e-5


def test_generate_until_stops_at_stop_string_and_matches_generate(neox):
    contexts = ["the cat", "hello", "the dog", ""]
    requests = []
    for context in contexts:
        ids = encode(neox, context) if context else [neox.tokenizer.eos_token_id]
        with torch.no_grad():
            out = neox.model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=12, pad_token_id=1)
        full = neox.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)
        stop = next(ch for ch in full[3:] if ch.isascii())
        expected, _ = truncate_at_stop(full, (stop,))
        requests.append((GenerationRequest(context, (stop, "\x00never"), 12), expected, full))
    results = neox.generate_until([r for r, _, _ in requests] + [GenerationRequest("the cat", (), 5)])
    for (request, expected, full), result in zip(requests, results):
        assert result.error is None and result.text == expected and request.stop[0] not in result.text
        assert result.n_tokens < 12 or expected == full
    assert results[-1].n_tokens == 5


@pytest.mark.parametrize("packed", [False, True], ids=["plain-rows", "packed-rows"])
def test_out_of_memory_halves_batch_then_is_a_user_error(neox, monkeypatch, packed):
    settings = ModelSettings(batch_size=16, prefix_reuse=packed, prefix_min_tokens=4)
    model = HFModel(neox.model, neox.tokenizer, settings, name="/ckpt/tiny")
    requests = mixed_prefix_requests()
    forward = neox.model.forward

    def small_batches_only(*args, **kwargs):
        if kwargs["input_ids"].shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(*args, **kwargs)

    monkeypatch.setattr(neox.model, "forward", small_batches_only)
    results = model.loglikelihood(requests)
    assert model.batch_size_ <= 2 and model.packing_verified_ == packed
    monkeypatch.setattr(neox.model, "forward", forward)
    reference = HFModel(neox.model, neox.tokenizer, ModelSettings(tree_packing=False)).loglikelihood(requests)
    assert max(abs(a.logprob - b.logprob) for a, b in zip(results, reference)) < 1e-5

    def never(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(neox.model, "forward", never)
    with pytest.raises(UserError, match="/ckpt/tiny.*batch size 1"):
        model.loglikelihood(requests)


def test_load_succeeds_with_network_blocked(models_dir, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    model = HFModel.from_checkpoint(models_dir["gpt2"])
    assert model.loglikelihood([LoglikelihoodRequest("the", " cat")])[0].error is None


def test_gguf_checkpoint_scores_like_its_safetensors_source(models_dir, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(models_dir["llama"])
    reference = HFModel(model, PreTrainedTokenizerFast.from_pretrained(models_dir["llama"]))
    write_llama_gguf(tmp_path / "tiny-step7.gguf", model, reference.tokenizer)
    (ckpt,) = discover(tmp_path)
    assert (ckpt.fmt, ckpt.step, ckpt.params) == ("gguf", 7, model.num_parameters())
    loaded = HFModel.from_checkpoint(ckpt)
    requests = choice_requests()[:4]
    for a, b in zip(loaded.loglikelihood(requests), reference.loglikelihood(requests)):
        assert abs(a.logprob - b.logprob) < 1e-5
