"""Checkpoint discovery, identity by weight hash, param counts, and refusal of bad or unsafe input."""
from __future__ import annotations

import json
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, BertConfig, BertForMaskedLM, BertLMHeadModel, GPTNeoXConfig
from transformers import GPT2Config, LlamaConfig, PreTrainedTokenizerFast

import harness.checkpoints.weight_files as weights_module
from harness.checkpoints.discovery import discover, find_duplicate_weights, parse_step
from harness.model.hf_model import HFModel
from harness.checkpoints.weight_files import count_params_safetensors
from skill_catalog.errors import UserError

VOCAB = 64
IDS = {"bos_token_id": 0, "eos_token_id": 0}


def save_tokenizer(folder) -> None:
    """A character-level WordLevel tokenizer: enough for loading, nothing here scores text."""
    vocab = {"<eos>": 0, "<unk>": 1, **{chr(97 + i): 2 + i for i in range(26)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>").save_pretrained(folder)


def save_model(folder, config, seed: int = 0, cls=AutoModelForCausalLM, tokenizer: bool = True):
    torch.manual_seed(seed)
    model = cls.from_config(config) if cls is AutoModelForCausalLM else cls(config)
    model.save_pretrained(folder)
    if tokenizer:
        save_tokenizer(folder)
    return model


def neox_config():
    return GPTNeoXConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64, **IDS)


def write_gguf(path, arch: str) -> None:
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), arch)
    writer.add_tensor("token_embd.weight", np.zeros((10, 4), np.float32))
    writer.add_tensor("blk.0.attn_q.weight", np.ones((4, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


class Payload:
    """A pickle whose loading creates a marker file (stands in for arbitrary code execution)."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EMERGENCE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def neox_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("neox")
    save_model(folder, neox_config())
    return folder


@pytest.mark.parametrize("arch", ["neox", "gpt2", "llama"])
def test_params_counted_from_headers_match_the_model(tmp_path, arch):
    config = {"neox": neox_config(),
              "gpt2": GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64, **IDS),
              "llama": LlamaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64, max_position_embeddings=64, **IDS)}[arch]
    model = save_model(tmp_path, config)
    (ckpt,) = discover(tmp_path)
    embed_in, embed_out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    n_embedding = embed_in.numel() + (0 if embed_out is embed_in else embed_out.numel())
    n_embedding += model.transformer.wpe.weight.numel() if arch == "gpt2" else 0
    assert (ckpt.params, ckpt.params_nonembedding) == (model.num_parameters(), model.num_parameters() - n_embedding)
    assert ckpt.fmt == "safetensors" and ckpt.dtype == "F32" and ckpt.architecture == type(model).__name__


def test_tied_output_embedding_stored_twice_counts_once(tmp_path):
    embedding = torch.randn(10, 4)
    save_file({"model.embed_tokens.weight": embedding, "lm_head.weight": embedding.clone(),
               "model.layers.0.w.weight": torch.randn(4, 4)}, tmp_path / "tied.safetensors")
    counts = count_params_safetensors([tmp_path / "tied.safetensors"])
    assert (counts.total, counts.nonembedding) == (56, 16)


def test_step_folders_discovered_with_step_and_meta(tmp_path, neox_dir):
    family = tmp_path / "pythia-tiny"
    family.mkdir()
    save_tokenizer(family)
    for name in ("step1000", "step-2000", "step_3000", "checkpoint-4000", "notastep"):
        (family / name).mkdir()
        for file in ("config.json", "model.safetensors"):
            shutil.copy(neox_dir / file, family / name / file)
    (family / "step_3000" / "train_meta.json").write_text(json.dumps({"step": 3000, "tokens_seen": 6_291_456}))
    found = discover(family)
    assert [(c.label, c.step) for c in found] == [
        ("pythia-tiny/step1000", 1000), ("pythia-tiny/step-2000", 2000),
        ("pythia-tiny/step_3000", 3000), ("pythia-tiny/checkpoint-4000", 4000),
    ]
    assert found[2].tokens_seen == 6_291_456 and found[0].tokens_seen is None
    assert all(c.tokenizer_path == family for c in found)
    # a step folder named on its own keeps its family in its label, as when found under the family
    assert [c.label for c in discover(str(family / "step[-_]*"))] == ["pythia-tiny/step-2000", "pythia-tiny/step_3000"]
    assert parse_step("global_step12") == 12 and parse_step("stepped") is None


def test_duplicate_weights_flagged(tmp_path, neox_dir):
    for name in ("a", "b"):
        shutil.copytree(neox_dir, tmp_path / name)
    save_model(tmp_path / "c", neox_config(), seed=1)
    found = [c for name in ("a", "b", "c") for c in discover(tmp_path / name)]
    assert find_duplicate_weights(found) == [("a", "b")]


def test_weight_hash_changes_with_weights_and_cache_notices(tmp_path, neox_dir, monkeypatch):
    shutil.copytree(neox_dir, tmp_path / "m")
    reads = []
    real = weights_module._sha256_file
    monkeypatch.setattr(weights_module, "_sha256_file", lambda path: reads.append(path) or real(path))
    first = discover(tmp_path / "m")[0].checkpoint_id
    assert discover(tmp_path / "m")[0].checkpoint_id == first and len(reads) == 1  # second time from the cache
    weights = tmp_path / "m" / "model.safetensors"
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, valid header, different weights
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert discover(tmp_path / "m")[0].checkpoint_id != first and len(reads) == 2


def test_malicious_pickle_is_never_executed(tmp_path, neox_dir):
    live = tmp_path / "live_marker"
    pickle.loads(pickle.dumps(Payload(live)))
    assert live.exists()  # the payload really runs when unpickled
    marker = tmp_path / "marker"
    only_pickle = tmp_path / "only_pickle"
    only_pickle.mkdir()
    shutil.copy(neox_dir / "config.json", only_pickle)
    save_tokenizer(only_pickle)
    (only_pickle / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(UserError, match="allow_pickle"):
        discover(only_pickle)
    (ckpt,) = discover(only_pickle, allow_pickle=True)  # hashing reads bytes only
    assert ckpt.fmt == "pickle" and ckpt.params is None
    with pytest.raises(UserError, match=str(only_pickle)):
        HFModel.from_checkpoint(ckpt)
    both = tmp_path / "both"
    shutil.copytree(neox_dir, both)
    (both / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(marker)))
    (ckpt,) = discover(both)
    assert ckpt.fmt == "safetensors" and [p.name for p in ckpt.weight_files] == ["model.safetensors"]
    HFModel.from_checkpoint(ckpt)
    assert not marker.exists()


def _missing(tmp_path, neox_dir):
    return tmp_path / "does-not-exist"


def _no_weights(tmp_path, neox_dir):
    shutil.copy(neox_dir / "config.json", tmp_path)
    save_tokenizer(tmp_path)
    return tmp_path


def _truncated(tmp_path, neox_dir):
    shutil.copytree(neox_dir, tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    return tmp_path / "m"


def _garbage_header(tmp_path, neox_dir):
    shutil.copytree(neox_dir, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes((10**12).to_bytes(8, "little") + b"{}")
    return tmp_path / "m"


def _masked_lm(tmp_path, neox_dir):
    save_model(tmp_path, BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=64), cls=BertForMaskedLM)
    return tmp_path


def _bidirectional_lm_head(tmp_path, neox_dir):
    save_model(tmp_path, BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=64, is_decoder=False), cls=BertLMHeadModel)
    return tmp_path


def _no_tokenizer(tmp_path, neox_dir):
    shutil.copy(neox_dir / "config.json", tmp_path)
    shutil.copy(neox_dir / "model.safetensors", tmp_path)
    return tmp_path


def _gguf_unsupported(tmp_path, neox_dir):
    write_gguf(tmp_path / "model.gguf", "foobar")
    return tmp_path / "model.gguf"


@pytest.mark.parametrize("make", [_missing, _no_weights, _truncated, _garbage_header, _masked_lm,
                                  _bidirectional_lm_head, _no_tokenizer, _gguf_unsupported])
def test_bad_input_is_a_one_line_user_error_naming_the_path(tmp_path, neox_dir, make):
    path = make(tmp_path, neox_dir)
    with pytest.raises(UserError) as error:
        for ckpt in discover(path):
            HFModel.from_checkpoint(ckpt)
    message = str(error.value)
    assert str(path) in message and "fix:" in message and "\n" not in message


def test_gguf_file_discovered_with_param_counts(tmp_path):
    write_gguf(tmp_path / "tiny-step500.gguf", "llama")
    (ckpt,) = discover(tmp_path)
    assert (ckpt.fmt, ckpt.architecture, ckpt.params, ckpt.params_nonembedding) == ("gguf", "LlamaForCausalLM", 56, 16)
    assert ckpt.step == 500 and ckpt.dtype == "F32" and ckpt.tokenizer_path == tmp_path / "tiny-step500.gguf"
