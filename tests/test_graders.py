"""Graders and model conventions that hold on real checkpoints: BOS policy, stop tokens a tokenizer can produce,
positional partial credit, the choices-only baseline, bounded likelihood memory, capped cross-entropy windows."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from tiny_models import direct, make_tokenizer, mixed_prefix_requests
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

import harness.model.batching as batching
import harness.model.hf_model as hf_model
from harness.model.hf_model import HFModel, ModelSettings
from harness.model.protocol import GenerationResult, LoglikelihoodRequest, LoglikelihoodResult
from harness.run.item_metrics import score_items
from skill_catalog.compose import CompositionSpec, compose_items
from skill_catalog.errors import UserError
from skill_catalog.grading import grade

NATURAL = CompositionSpec(skill_set="natural", ks=(1,), single_items_per_skill=1, n_shots=3, seed=1,
                          skills=("successor", "capital_of", "plural", "opposite"))


def bpe_tokenizer(texts: list[str], bos_post_processor: bool = False) -> PreTrainedTokenizerFast:
    """A GPT-2 style byte-level BPE trained on `texts`; few-shot prompts teach it to merge newlines."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<pad>", "<s>"],
                                  show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts * 3, trainer)
    if bos_post_processor:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<pad>", bos_token="<s>")


def bigram_model(tokenizer, transitions: dict[int, int]) -> LlamaForCausalLM:
    """A Llama whose next token depends only on the current one: `transitions` maps a token to its successor.

    Attention and MLP outputs are zero and the embedding is one-hot, so logits = lm_head column of the token.
    """
    vocab = len(tokenizer)
    hidden = vocab + (-vocab) % 4  # two heads of an even size
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=8, max_position_embeddings=1024,
                         tie_word_embeddings=False, bos_token_id=2, eos_token_id=0, pad_token_id=1)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.model.embed_tokens.weight.zero_()
        model.model.embed_tokens.weight[:, :vocab] = torch.eye(vocab)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        for current, successor in transitions.items():
            model.lm_head.weight[successor, current] = 1.0
    return model


@pytest.fixture(scope="module")
def newline_case():
    """A natural few-shot item, a BPE that merges "\\n\\n", and a model that answers it greedily then emits "\\n\\n"."""
    items = list(compose_items(NATURAL))
    tokenizer = bpe_tokenizer([i.prompt + i.answer + i.stop for i in items])
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    (merged,) = encode("\n\n")  # the tokenizer merges the few-shot separator
    for item in items:
        context = encode(item.prompt)
        answer = encode(item.prompt + item.answer)[len(context):]
        path = [context[-1], *answer, merged]
        if len(set(path)) == len(path):
            model = bigram_model(tokenizer, dict(zip(path, path[1:])))
            return item, model, tokenizer, merged
    raise AssertionError("no item with distinct answer tokens")


def test_greedy_match_counts_a_merged_newline_as_the_stop(newline_case):
    item, model, tokenizer, merged = newline_case
    hf = HFModel(model, tokenizer, ModelSettings(batch_size=4))
    rows = {r.metric: r for r in score_items(hf, [item], ["exact_match", "gold_logprob"], 8)}
    assert rows["exact_match"].value == 1.0  # greedy generation produced the answer, then "\n\n"
    assert rows["greedy_match"].value == 1.0  # and teacher forcing agrees
    assert rows["gold_logprob"].error is None and rows["gold_logprob"].n_tokens >= 2


def test_gold_logprob_adds_the_mass_of_every_token_starting_with_the_stop(newline_case):
    item, model, tokenizer, merged = newline_case
    hf = HFModel(model, tokenizer, ModelSettings(batch_size=4))
    result, = hf.loglikelihood([LoglikelihoodRequest(item.prompt, item.answer, item.stop)])
    context = tokenizer(item.prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(item.prompt + item.answer, add_special_tokens=False)["input_ids"]
    answer_logprob, _ = direct(model, ids, len(context))
    with torch.no_grad():
        last = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].float(), -1)
    stops = [i for i in range(len(tokenizer)) if tokenizer.decode([i]).startswith("\n")] + [tokenizer.eos_token_id]
    assert merged in stops and len(stops) >= 3
    expected = answer_logprob + float(torch.logsumexp(last[stops], 0))
    assert result.error is None and result.is_greedy and result.n_tokens == len(ids) - len(context) + 1
    assert abs(result.logprob - expected) < 1e-5


def test_partial_credit_penalises_extra_and_repeated_parts():
    spec = CompositionSpec(skill_set="natural", ks=(4,), modes=("chain",), items_per_cell=1, seed=2,
                           skills=("successor", "double", "add_ten", "predecessor"))
    item = next(i for i in compose_items(spec) if i.k == 4)
    first, second = item.part_answers[:2]
    repeated = grade(item, " " + " -> ".join([first] * 8))
    assert repeated.parts_correct == 1 and repeated.partial == pytest.approx(1 / 8)
    assert grade(item, f" {first} -> {second}").partial == pytest.approx(2 / 4)  # missing parts: /gold parts
    assert grade(item, " " + " -> ".join(item.part_answers)).partial == 1.0
    shifted = grade(item, " " + " -> ".join(["0", *item.part_answers]))  # right values, wrong positions
    assert shifted.partial < 0.5

    class Repeats:
        def generate_until(self, requests):
            return [GenerationResult(" " + " -> ".join([first] * 8), 16) for _ in requests]

    rows = {r.metric: r for r in score_items(Repeats(), [item], ["partial_credit"], 32)}
    assert rows["partial_credit"].value == pytest.approx(1 / 8)


class BiasedChoices:
    """Multiple choice where a distractor wins with the question and the gold wins without it."""

    def __init__(self, item):
        self.item = item

    def loglikelihood(self, requests):
        gold = self.item.answer
        return [LoglikelihoodResult((-1.0 if r.continuation == gold else -3.0) if r.context == "" else
                                    (-1.0 if r.continuation == self.item.choices[(self.item.gold_index + 1) % len(self.item.choices)]
                                     else -3.0), False, 1) for r in requests]


def test_choices_only_baseline_is_recorded_and_a_model_below_it_is_named():
    item = max(compose_items(NATURAL), key=lambda i: len(i.choices))
    rows = score_items(BiasedChoices(item), [item], ["multiple_choice"], 8)
    mc = {r.metric: r for r in rows}
    assert set(mc) == {"mc_accuracy", "mc_accuracy_char", "mc_accuracy_byte"}
    for row in mc.values():
        assert row.value == 0.0 and row.chance == 1 / len(item.choices) and row.choices_only == 1.0
    from harness.report.headline import below_choices_only

    records = pd.DataFrame([{**r.row(), "checkpoint_id": "c1"} for r in rows])
    below = below_choices_only(records)
    assert list(below["checkpoint_id"]) == ["c1"] and float(below["baseline"][0]) == 1.0


def test_gemma_family_starts_every_context_with_bos():
    tokenizer = make_tokenizer(bos=True)
    config = AutoConfig.for_model("gemma3_text", vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, head_dim=8, intermediate_size=64,
                                  max_position_embeddings=128, bos_token_id=tokenizer.bos_token_id,
                                  eos_token_id=0, pad_token_id=1)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    bos = tokenizer.bos_token_id
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    hf = HFModel(model, tokenizer, ModelSettings(batch_size=4))
    assert hf.bos_ and "Gemma" in hf.bos_rule_
    assert hf.context_tokens("the cat") == [bos] + encode("the cat")  # what generation starts from
    got, = hf.loglikelihood([LoglikelihoodRequest("the cat", " sat")])
    expected, _ = direct(model, [bos] + encode("the cat sat"), 1 + len(encode("the cat")))
    assert abs(got.logprob - expected) < 1e-5
    never = HFModel(model, tokenizer, ModelSettings(batch_size=4, bos="never"))
    plain, = never.loglikelihood([LoglikelihoodRequest("the cat", " sat")])
    assert not never.bos_ and abs(plain.logprob - direct(model, encode("the cat sat"), len(encode("the cat")))[0]) < 1e-5


def test_bos_policy_reads_the_tokenizer_and_can_be_overridden(newline_case):
    _, model, _, _ = newline_case  # a Llama
    texts = ["the cat sat on the mat", "hello world"]
    adds, plain = bpe_tokenizer(texts, bos_post_processor=True), bpe_tokenizer(texts)
    assert hf_model.bos_policy(model, adds) == (True, "always (the tokenizer adds BOS when it encodes)")
    assert hf_model.bos_policy(model, plain)[0] is False
    assert hf_model.bos_policy(model, plain, "always")[0] is True
    with pytest.raises(UserError, match="bos"):
        hf_model.bos_policy(model, make_tokenizer(bos=False), "always")
    with pytest.raises(UserError, match="sometimes"):
        hf_model.bos_policy(model, plain, "sometimes")


def test_likelihood_path_computes_logits_only_in_bounded_chunks(monkeypatch):
    tokenizer = make_tokenizer()
    config = AutoConfig.for_model("gemma2", vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, head_dim=8, intermediate_size=64,
                                  max_position_embeddings=256, bos_token_id=0, eos_token_id=0, pad_token_id=1)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()  # final logit soft-capping after the output layer
    vocab = model.get_output_embeddings().weight.shape[0]
    monkeypatch.setattr(batching, "CHUNK_LOGITS", 8 * vocab, raising=False)
    rows_per_call: list[int] = []
    model.get_output_embeddings().register_forward_hook(lambda m, i, out: rows_per_call.append(out[..., 0].numel()))
    requests = mixed_prefix_requests()
    text = " ".join(["the cat sat on the mat, hello world said the dog"] * 30)
    bounded = HFModel(model, tokenizer, ModelSettings(batch_size=4, prefix_min_tokens=4, max_length=128))
    got, rolling = bounded.loglikelihood(requests), bounded.loglikelihood_rolling([text])[0]
    assert bounded.head_verified_ and bounded.head_disabled_reason_ is None
    assert max(rows_per_call) <= 8  # a chunk of scored positions, or one position per row; checks included
    reference = HFModel(model, tokenizer, ModelSettings(batch_size=1, prefix_reuse=False, tree_packing=False))
    reference.head_ = None  # full-vocabulary logits at every position, as before
    expected = reference.loglikelihood(requests)
    assert max(abs(a.logprob - b.logprob) for a, b in zip(got, expected)) < 1e-5
    assert [a.is_greedy for a in got] == [b.is_greedy for b in expected]
    full = HFModel(model, tokenizer, ModelSettings(max_length=128))
    full.head_ = None
    assert abs(rolling.logprob - full.loglikelihood_rolling([text])[0].logprob) < 1e-4


def test_an_output_layer_that_does_not_reproduce_the_logits_is_not_used(monkeypatch):
    tokenizer = make_tokenizer()
    config = AutoConfig.for_model("gemma2", vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, head_dim=8, intermediate_size=64,
                                  max_position_embeddings=128, final_logit_softcapping=2.0,
                                  bos_token_id=0, eos_token_id=0, pad_token_id=1)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    layer = model.get_output_embeddings()
    monkeypatch.setattr(hf_model, "output_head", lambda m: (layer, layer))  # forgets the soft-capping
    hf = HFModel(model, tokenizer, ModelSettings(batch_size=4, prefix_min_tokens=4))
    got = hf.loglikelihood(mixed_prefix_requests())
    assert hf.head_ is None and "differ" in hf.head_disabled_reason_
    plain = HFModel(model, tokenizer, ModelSettings(batch_size=1, prefix_reuse=False, tree_packing=False))
    assert max(abs(a.logprob - b.logprob) for a, b in zip(got, plain.loglikelihood(mixed_prefix_requests()))) < 1e-5


def test_cross_entropy_windows_are_capped_without_a_max_length():
    tokenizer = make_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=16, max_position_embeddings=32768,
                         bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    widths: list[int] = []
    model.register_forward_pre_hook(lambda m, args, kwargs: widths.append(kwargs["input_ids"].shape[1]),
                                    with_kwargs=True)
    text = " ".join(["the cat sat on the mat"] * 400)
    n_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert n_tokens > 2100
    default = HFModel(model, tokenizer, ModelSettings(batch_size=2))
    result, = default.loglikelihood_rolling([text])
    assert default.max_length_ == 32768 and default.window_length_ == hf_model.DEFAULT_WINDOW == 2048
    assert result.error is None and result.n_tokens == n_tokens and max(widths) <= 2048
    widths.clear()
    short = HFModel(model, tokenizer, ModelSettings(batch_size=8, max_length=100))
    assert short.loglikelihood_rolling([text])[0].error is None and max(widths) <= 100
    assert math.isfinite(result.logprob)
