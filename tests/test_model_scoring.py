"""HFModel against direct transformers forward passes on tiny models built from configs in tmp_path."""
from __future__ import annotations

import json
import math
import random
import socket

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, GPT2Config, GPTNeoXConfig, LlamaConfig, PreTrainedTokenizerFast

from harness.model.batching import merge_rows, prefix_groups
from harness.checkpoints.discovery import discover
from harness.model.hf_model import HFModel, ModelSettings
from harness.model.protocol import (GenerationRequest, LanguageModel, LoglikelihoodRequest, encode_pair, rolling_windows,
                           truncate_at_stop)
from skill_catalog.errors import UserError

CORPUS = ["the cat sat on the mat", "Question: what is two plus two? Answer: four", "hello world, said the dog"]
FEWSHOT = "Question: what is two plus two? Answer: four\n\nQuestion: the cat sat on the mat? Answer: hello\n\n"
QUESTIONS = ["the cat", "hello world", "two plus", "the dog"]
ANSWERS = [" four", " cat", " mat sat on", " the"]


def make_tokenizer(bos: bool = False) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2 style) trained on a few sentences."""
    specials = ["<|endoftext|>", "<pad>"] + (["<s>"] if bos else [])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 3, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<pad>",
                                   bos_token="<s>" if bos else None)


def make_config(arch: str, vocab: int):
    common = {"vocab_size": vocab, "bos_token_id": 0, "eos_token_id": 0}
    if arch == "gpt2":
        return GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=128, **common)
    if arch == "neox":
        return GPTNeoXConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             max_position_embeddings=128, **common)
    return LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       intermediate_size=64, max_position_embeddings=128, **common)


def build_checkpoint(folder, arch: str = "neox", seed: int = 0):
    """Save a randomly initialised tiny model and its tokenizer into `folder`; return the folder."""
    tokenizer = make_tokenizer()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(make_config(arch, len(tokenizer)))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", autouse=True)
def _private_cache_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EMERGENCE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {arch: build_checkpoint(root / arch, arch) for arch in ("neox", "gpt2", "llama")}


@pytest.fixture(scope="module")
def neox(models_dir, tmp_path_factory):
    (ckpt,) = discover(models_dir["neox"], hash_cache=tmp_path_factory.mktemp("h") / "h.sqlite")
    return HFModel.from_checkpoint(ckpt, ModelSettings(batch_size=16, prefix_min_tokens=4))


def encode(model: HFModel, text: str) -> list[int]:
    return model.tokenizer(text, add_special_tokens=False)["input_ids"]


def direct(model, ids: list[int], n_context: int) -> tuple[float, bool]:
    """Sum of log p(ids[i] | ids[:i]) for i >= n_context from one plain forward pass, and greediness."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    target = torch.tensor(ids[1:])
    logprobs = torch.log_softmax(logits[:-1], -1).gather(-1, target[:, None]).squeeze(-1)
    greedy = (logits[:-1].argmax(-1) == target)[n_context - 1:].all()
    return float(logprobs[n_context - 1:].double().sum()), bool(greedy)


def choice_requests() -> list[LoglikelihoodRequest]:
    return [LoglikelihoodRequest(f"{FEWSHOT}Question: {q}? Answer:", a) for q in QUESTIONS for a in ANSWERS]


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


def write_llama_gguf(path, model, tokenizer) -> None:
    """Write a Llama model and its BPE tokenizer as llama.cpp does (q/k rows permuted for its rotary layout)."""
    from gguf import GGUFWriter

    def permute(w, n_head):
        return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    cfg, sd = model.config, {k: v.detach().numpy() for k, v in model.state_dict().items()}
    writer = GGUFWriter(str(path), "llama")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(10000.0)
    spec = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    tokens = [t for t, _ in sorted(spec["vocab"].items(), key=lambda kv: kv[1])]
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in tokenizer.all_special_tokens else 1 for t in tokens])
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in spec["merges"]])
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    names = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
    for gguf_name, name in names.items():
        writer.add_tensor(f"{gguf_name}.weight", sd[f"{name}.weight"])
    blocks = {"attn_norm": "input_layernorm", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
              "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
              "ffn_down": "mlp.down_proj"}
    for i in range(cfg.num_hidden_layers):
        layer = f"model.layers.{i}."
        q, k = sd[layer + "self_attn.q_proj.weight"], sd[layer + "self_attn.k_proj.weight"]
        writer.add_tensor(f"blk.{i}.attn_q.weight", permute(q, cfg.num_attention_heads))
        writer.add_tensor(f"blk.{i}.attn_k.weight", permute(k, cfg.num_key_value_heads))
        for gguf_name, name in blocks.items():
            writer.add_tensor(f"blk.{i}.{gguf_name}.weight", sd[f"{layer}{name}.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


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


OTHER_FEWSHOT = "Question: hello world? Answer: the dog\n\nQuestion: the cat sat? Answer: on the mat\n\n"


def mixed_prefix_requests() -> list[LoglikelihoodRequest]:
    """Choices under two different few-shot prefixes, plus requests without any shared prefix."""
    other = [LoglikelihoodRequest(f"{OTHER_FEWSHOT}Question: {q}? Answer:", a) for q in QUESTIONS[:3] for a in ANSWERS]
    return choice_requests() + other + [LoglikelihoodRequest(c, a) for c in CORPUS for a in ANSWERS[:2]]


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


def count_forward_positions(model):
    """Context manager counting input positions run forward (a plain copy of the benchmark helper)."""
    import contextlib

    @contextlib.contextmanager
    def counting():
        counts = {"positions": 0}
        forward = model.forward

        def counted(*args, **kwargs):
            counts["positions"] += int(kwargs["input_ids"].numel())
            return forward(*args, **kwargs)

        model.forward = counted
        try:
            yield counts
        finally:
            del model.forward

    return counting()


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
