"""Tiny random-weight models built from configs (GPT-NeoX, GPT-2, Llama with grouped-query attention), their BPE
tokenizer, request sets and reference computations shared by the model tests (tests/ is on sys.path under pytest)."""
from __future__ import annotations

import json

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, GPT2Config, GPTNeoXConfig, LlamaConfig, PreTrainedTokenizerFast

from harness.model.hf_model import HFModel
from harness.model.protocol import LoglikelihoodRequest

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


OTHER_FEWSHOT = "Question: hello world? Answer: the dog\n\nQuestion: the cat sat? Answer: on the mat\n\n"


def mixed_prefix_requests() -> list[LoglikelihoodRequest]:
    """Choices under two different few-shot prefixes, plus requests without any shared prefix."""
    other = [LoglikelihoodRequest(f"{OTHER_FEWSHOT}Question: {q}? Answer:", a) for q in QUESTIONS[:3] for a in ANSWERS]
    return choice_requests() + other + [LoglikelihoodRequest(c, a) for c in CORPUS for a in ANSWERS[:2]]


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
