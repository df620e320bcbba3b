"""Cost of the load-time weight checks (harness.model.hf_load: loading report, one min/max per tensor for NaN/inf).

Saves a randomly initialised GPT-NeoX (162M parameters by default, untied output embedding) with a tokenizer into a temporary
folder and times `HFModel.from_checkpoint` with the checks and with them replaced by no-ops, alternating,
median of --repeats. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import _common as C
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, GPTNeoXConfig, PreTrainedTokenizerFast

import harness.model.hf_load as hf_load
from harness.model.hf_model import HFModel


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=768, help="hidden size (12 layers, vocab 50304)")
    p.add_argument("--repeats", type=int, default=5, help="timed loads per variant")
    p.add_argument("--threads", type=int, help="torch threads (default: OMP_NUM_THREADS)")
    p.add_argument("--quick", action="store_true", help="hidden 128, 3 repeats")
    args = p.parse_args()
    if args.quick:
        args.hidden, args.repeats = 128, 3
    return args


def save_model(folder: Path, hidden: int) -> int:
    torch.manual_seed(0)
    config = GPTNeoXConfig(vocab_size=50304, hidden_size=hidden, num_hidden_layers=12, num_attention_heads=max(hidden // 64, 1),
                           intermediate_size=4 * hidden, max_position_embeddings=2048, bos_token_id=0, eos_token_id=0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    vocab = {"<eos>": 0, "<unk>": 1, **{chr(97 + i): 2 + i for i in range(26)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>").save_pretrained(folder)
    return model.num_parameters()


def main() -> None:
    args = parse_args()
    threads = C.set_threads(args.threads)
    checks = (hf_load.check_loaded_weights, hf_load.check_finite_weights)
    with tempfile.TemporaryDirectory() as tmp:
        params = save_model(Path(tmp), args.hidden)
        HFModel.from_checkpoint(Path(tmp))  # warm the page cache
        times = {"with checks": [], "without checks": []}
        for _ in range(args.repeats):
            for variant in times:
                off = variant == "without checks"
                hf_load.check_loaded_weights, hf_load.check_finite_weights = ((lambda *a: None,) * 2 if off else checks)
                times[variant].append(C.timed(HFModel.from_checkpoint, Path(tmp))[1])
        hf_load.check_loaded_weights, hf_load.check_finite_weights = checks
    rows = [{"variant": v, "params": params, "median_s": C.median(t), "min_s": min(t), "max_s": max(t)} for v, t in times.items()]
    C.print_table(f"load time of a {params / 1e6:.0f}M-parameter model, {threads} thread(s)", rows,
                  ["variant", "params", "median_s", "min_s", "max_s"])
    C.write_result("load_checks_quick" if args.quick else "load_checks", rows, vars(args), threads=threads)


if __name__ == "__main__":
    main()
