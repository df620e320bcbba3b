"""Every scoring shortcut gives plain scores on many architectures, or turns itself off and says why.

Tiny random models built from configs: rotary (Qwen2/3, Phi, StableLM, GPT-J, Falcon), learned positions
(OPT), ALiBi (Bloom, MPT, Falcon with alibi), sliding-window layers (Mistral, Gemma 2).
"""
from __future__ import annotations

import pytest
import torch
from tiny_models import make_tokenizer, mixed_prefix_requests
from transformers import AutoConfig, AutoModelForCausalLM

from harness.model.hf_model import HFModel, ModelSettings
from harness.model.protocol import LoglikelihoodRequest
from harness.model.tree_packing import attention_span

LLAMA_LIKE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "intermediate_size": 64, "max_position_embeddings": 128}
CONFIGS = {
    "qwen2": ("qwen2", LLAMA_LIKE),
    "qwen3": ("qwen3", {**LLAMA_LIKE, "head_dim": 8}),
    "phi": ("phi", {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
                    "max_position_embeddings": 128}),
    "stablelm": ("stablelm", LLAMA_LIKE),
    "gptj": ("gptj", {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 128, "rotary_dim": 4}),
    "falcon": ("falcon", {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "alibi": False,
                          "new_decoder_architecture": False}),
    "falcon-alibi": ("falcon", {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "alibi": True,
                                "new_decoder_architecture": False}),
    "opt": ("opt", {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "ffn_dim": 64,
                    "max_position_embeddings": 128, "word_embed_proj_dim": 32}),
    "bloom": ("bloom", {"hidden_size": 32, "n_layer": 2, "n_head": 4}),
    "mpt": ("mpt", {"d_model": 32, "n_layers": 2, "n_heads": 4, "max_seq_len": 128}),
    "mistral-window-16": ("mistral", {**LLAMA_LIKE, "sliding_window": 16}),
    "gemma2-window-16": ("gemma2", {**LLAMA_LIKE, "head_dim": 8, "sliding_window": 16}),
    "gemma2-window-64": ("gemma2", {**LLAMA_LIKE, "head_dim": 8, "sliding_window": 64}),
}


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


def build(name: str, tokenizer):
    model_type, kwargs = CONFIGS[name]
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), bos_token_id=0, eos_token_id=0,
                                  pad_token_id=1, **kwargs)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_shortcuts_give_plain_scores_or_turn_off_with_a_reason(name, tokenizer):
    model = build(name, tokenizer)
    requests = mixed_prefix_requests()
    fast = HFModel(model, tokenizer, ModelSettings(batch_size=4, prefix_min_tokens=4))
    got = fast.loglikelihood(requests)
    plain = HFModel(model, tokenizer, ModelSettings(batch_size=1, prefix_reuse=False, tree_packing=False))
    expected = plain.loglikelihood(requests)
    assert all(r.error is None for r in got)
    assert max(abs(a.logprob - b.logprob) for a, b in zip(got, expected)) < 1e-5
    assert [a.is_greedy for a in got] == [b.is_greedy for b in expected]
    assert fast.packing_ or fast.packing_disabled_reason_
    assert fast.prefix_reuse_ or fast.reuse_disabled_reason_


def test_sliding_window_layers_bound_which_rows_are_packed(tokenizer):
    model = build("gemma2-window-16", tokenizer)
    assert attention_span(model) == (16, None)
    assert attention_span(build("qwen2", tokenizer)) == (None, None)
    short = [LoglikelihoodRequest(q, a) for q in ("the cat", "the dog", "hello") for a in (" sat", " the mat", " cat")]
    fast = HFModel(model, tokenizer, ModelSettings(batch_size=4, prefix_min_tokens=4))
    fast.loglikelihood(short)  # every row fits in the window: packed, and checked against plain rows
    assert fast.packing_verified_
    long = HFModel(model, tokenizer, ModelSettings(batch_size=4, prefix_min_tokens=4))
    long.loglikelihood(mixed_prefix_requests())  # rows longer than 16 tokens: never packed
    assert long.packing_ and not long.packing_verified_
