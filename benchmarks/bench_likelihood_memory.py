"""Peak memory of the likelihood path: logits only where scored, in bounded chunks, vs full-vocabulary logits.

A random Llama of a tiny shape with a 49 152-token vocabulary (the vocabulary of a 135M SmolLM-style
model, where the logits, not the weights, dominate memory) scores rolling cross-entropy windows and
natural 3-shot multiple-choice items at a fixed batch size. Each variant runs in its own process and
reports its peak resident memory above the memory after loading (the scoring working set):

- ``chunked``: this checkout (output layer on the scored positions, `batching.CHUNK_LOGITS` at a time);
- ``full_logits``: this checkout with the output layer left inside the forward pass (its fallback);
- ``baseline`` (with ``--baseline-code DIR``): another checkout of the harness, e.g. the previous commit.

Log-probabilities of every variant are compared with the first one (max |difference|).

    OMP_NUM_THREADS=1 python benchmarks/bench_likelihood_memory.py [--baseline-code OLD_CHECKOUT]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_result  # noqa: E402

SHAPE = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "intermediate_size": 128, "max_position_embeddings": 2048, "vocab_size": 49152, "tie_word_embeddings": True}
"""A tiny Llama with a 49k vocabulary."""


def _child(variant: str, batch: int, window: int, n_items: int) -> dict:
    """Runs in the measured process: build, load, score, report peak RSS and the log-probs."""
    import resource

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from harness.model.hf_model import HFModel, ModelSettings
    from harness.model.protocol import LoglikelihoodRequest
    from skill_catalog.compose import CompositionSpec, compose_items

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    items = list(compose_items(CompositionSpec(skill_set="natural", ks=(1, 2), single_items_per_skill=1,
                                               items_per_cell=n_items, n_shots=3, seed=0)))[:n_items]
    texts = [i.prompt + i.answer + i.stop for i in items]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=2000, special_tokens=["<|endoftext|>"],
                                                       show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SHAPE, bos_token_id=0, eos_token_id=0)).eval()
    hf = HFModel(model, tokenizer, ModelSettings(device="cpu", batch_size=batch, max_length=window))
    if variant == "full_logits":
        hf.head_ = None
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    corpus = "".join(texts)
    rolling = hf.loglikelihood_rolling([corpus])
    choices = hf.loglikelihood([LoglikelihoodRequest(i.prompt, c) for i in items for c in i.choices])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"variant": variant, "rss_loaded_mb": loaded, "rss_peak_mb": peak, "working_set_mb": peak - loaded,
            "corpus_tokens": rolling[0].n_tokens, "choice_requests": len(choices),
            "logprobs": [r.logprob for r in rolling + choices]}


def _measure(variant: str, code: Path, args: argparse.Namespace) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{Path(__file__).resolve().parent}"}
    cmd = [sys.executable, __file__, "--child", variant, "--batch", str(args.batch), "--window", str(args.window),
           "--items", str(args.items)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8, help="rows per forward pass")
    parser.add_argument("--window", type=int, default=512, help="max_length: cross-entropy window and row limit")
    parser.add_argument("--items", type=int, default=24, help="natural 3-shot items (their choices are scored)")
    parser.add_argument("--baseline-code", help="another checkout of the harness to measure as 'baseline'")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.batch, args.window, args.items)))
        return
    here = Path(__file__).resolve().parent.parent
    runs = [_measure("chunked", here, args), _measure("full_logits", here, args)]
    if args.baseline_code:
        runs.append(_measure("baseline", Path(args.baseline_code).resolve(), args))
    reference = runs[0]["logprobs"]
    for r in runs:
        logprobs = r.pop("logprobs")
        r["n_finite"] = sum(math.isfinite(v) for v in logprobs)
        r["max_abs_logprob_diff"] = max(abs(a - b) for a, b in zip(reference, logprobs))
    columns = ["variant", "rss_loaded_mb", "rss_peak_mb", "working_set_mb", "n_finite", "max_abs_logprob_diff"]
    print_table(f"Likelihood-path memory (vocab {SHAPE['vocab_size']}, batch {args.batch}, window {args.window})",
                runs, columns)
    config = {"shape": SHAPE, "batch": args.batch, "window": args.window, "items": args.items,
              "baseline_code": "given" if args.baseline_code else None}
    write_result("likelihood_memory", runs, config,
                 notes=["working_set_mb = peak RSS - RSS after loading, each variant in its own process"])


if __name__ == "__main__":
    main()
