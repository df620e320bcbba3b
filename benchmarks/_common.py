"""Shared helpers of the benchmarks: machine and version facts, result files, tables, models under test.

Every benchmark writes ``benchmarks/results/<name>.json`` with the same header (date, hardware,
package versions, exact command), so two result files from different machines compare field by field.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import platform
import resource
import shlex
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "accelerate", "numpy", "pandas", "pyarrow",
            "scipy", "lm_eval", "datasets")
BENCH_HOME = Path(os.environ.get("EMERGENCE_BENCH_HOME", Path(os.environ.get("TMPDIR", "/tmp")) / "emergence-bench"))
"""Where built benchmark models (the random ~100M GPT-NeoX) are kept between runs."""
NEOX100M = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
            "max_position_embeddings": 2048, "rotary_pct": 0.25, "use_parallel_residual": True,
            "tie_word_embeddings": False}
"""The ~100M-parameter GPT-NeoX (Pythia-160M shape with 12 layers), random weights, seed 0."""
LLAMA135M = {"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
             "intermediate_size": 1536, "vocab_size": 49152, "max_position_embeddings": 2048,
             "tie_word_embeddings": True}
"""A Llama of the SmolLM-135M shape (grouped-query attention, tied embeddings), random weights, seed 0. Its
vocabulary is that shape's 49 152 while the local BPE has fewer tokens: ids past the tokenizer decode to
nothing, the same for both tools."""
BPE_VOCAB = 8192
"""Target vocabulary of the locally trained byte-level BPE (it stops earlier if the corpus runs out of merges)."""


# ---- environment -------------------------------------------------------------------------------

def set_threads(threads: int | None) -> int:
    """Sets torch's intra-op threads (default: leave torch's choice, i.e. OMP_NUM_THREADS); returns the count."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def hardware() -> dict[str, Any]:
    """CPU model, cores, torch threads, memory and GPU name (None without one)."""
    import torch

    cpu = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gb = math.nan
    return {"cpu": cpu, "cores": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0)),
            "torch_threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "memory_gb": round(mem_gb, 1), "gpu": gpu, "gpu_count": torch.cuda.device_count(),
            "load_average_1m": os.getloadavg()[0], "platform": platform.platform(),
            "python": platform.python_version()}


def versions() -> dict[str, str | None]:
    """Installed versions of the packages that can change a number or a time."""
    from harness.run.manifest import package_versions

    return package_versions(PACKAGES)


def command() -> str:
    """The exact command line of this process (environment variables that change timing included)."""
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES") if k in os.environ)
    return (env + " " if env else "") + shlex.join(["python", *sys.argv])


def portable_path(path: Path) -> str:
    """A path as results may record it: relative to the checkout, else relative to the bench home."""
    path = Path(path).resolve()
    for root, label in ((RESULTS_DIR.parent.parent, ""), (BENCH_HOME.resolve(), "$EMERGENCE_BENCH_HOME/")):
        if path.is_relative_to(root):
            return label + str(path.relative_to(root))
    return path.name


def write_result(name: str, rows: Sequence[dict], config: dict, notes: Sequence[str] = (), **extra: Any) -> Path:
    """Writes ``results/<name>.json``: header facts, the configuration, the table rows and notes."""
    from harness.run.manifest import git_commit, git_dirty
    from harness.storage.run_files import json_safe

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "command": command(), "git_commit": git_commit(), "git_dirty": git_dirty(),
               "hardware": hardware(), "versions": versions(),
               "config": config, "rows": list(rows), "notes": list(notes), **extra}
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.partial")
    tmp.write_text(json.dumps(json_safe(payload), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def print_table(title: str, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """Prints rows as an aligned text table (floats with 4 significant digits)."""
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "NaN" if math.isnan(v) else f"{v:.4g}"
        return "" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


# ---- measurement -------------------------------------------------------------------------------

def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync() -> None:
    """Waits for queued GPU work so wall times are complete (no-op on CPU)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


@contextmanager
def count_positions(model: Any) -> Iterator[dict[str, int]]:
    """Counts input positions the model runs forward on (padding included, cached prefix excluded)."""
    counts = {"positions": 0, "calls": 0}

    def hook(module: Any, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None:
            counts["positions"] += int(ids.numel())
            counts["calls"] += 1

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield counts
    finally:
        handle.remove()


def timed(fn, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """Calls `fn` and returns (its result, wall seconds), GPU work included."""
    sync()
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    sync()
    return out, time.perf_counter() - start


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


# ---- models under test -------------------------------------------------------------------------

def family_dir(family: str | None) -> Path:
    """The family folder: `family` when given, else the built-in default family (a clear exit if absent)."""
    if family:
        return Path(family).expanduser().resolve()
    from harness.zoo.family import family_path
    from skill_catalog.errors import UserError

    try:
        return family_path("default")
    except UserError as err:
        sys.exit(f"{err}\n(for development: `emergence zoo build --preset tiny --out DIR` "
                 "and pass --family DIR)")


def family_checkpoints(family: str | None) -> list[dict]:
    """Checkpoint rows of a family manifest (absolute ``path``), largest final model first."""
    from harness.zoo.family import load_manifest

    folder = family_dir(family)
    rows = [{**r, "path": str(folder / r["path"])} for r in load_manifest(folder)["checkpoints"]]
    return sorted(rows, key=lambda r: (not r.get("final", True), -(r.get("params") or 0), -(r.get("step") or 0)))


def largest_checkpoint(family: str | None) -> Path:
    """Folder of the largest final checkpoint of the family."""
    return Path(family_checkpoints(family)[0]["path"])


def checkpoint_at(folder: Path):
    """The `Checkpoint` of exactly this folder (a final checkpoint's folder also holds its step folders)."""
    from harness.checkpoints.discovery import discover

    folder = Path(folder).resolve()
    found = [c for c in discover(folder) if c.path == folder]
    if len(found) != 1:
        sys.exit(f"{folder}: holds no loadable checkpoint of its own")
    return found[0]


def nonembedding_params(folder: Path) -> int:
    """Non-embedding parameters counted from the safetensors headers."""
    from harness.checkpoints.weight_files import count_params_safetensors

    return count_params_safetensors(sorted(Path(folder).glob("*.safetensors"))).nonembedding


SELECTIONS = ("spread", "per-cell")
"""How a benchmark picks its items: ``spread`` evenly over the whole suite (its mix of k: the natural suite is
about half single-skill items, whose 3-shot prompts are short), or ``per-cell``, the first items of every
(k, mode, split) cell, exactly as ``emergence run --limit N`` composes them (12 of the natural suite's 13 cells
are composite, with longer prompts; the items of a (k, mode) share its few-shot exemplars)."""


def select_items(items: Sequence[Any], selection: str, per_cell: int, n_items: int | None = None) -> list[Any]:
    """The benchmark's items in composition order.

    Args:
        items: Every composed item of the suite, in composition order.
        selection: ``per-cell``: the first `per_cell` items of every (k, mode, split) cell, the runner's own
            ``--limit`` rule (`harness.run.runner._limited`); ``spread``: `n_items` items spread evenly over
            the suite (default: as many as ``per-cell`` takes, so both selections compare at the same count).
        per_cell: Items per cell of the ``per-cell`` selection.
        n_items: Items of the ``spread`` selection.
    """
    from harness.run.runner import _limited

    run_items = list(_limited(list(items), per_cell))
    if selection == "per-cell":
        return run_items
    if selection != "spread":
        raise ValueError(f"selection {selection!r} is not one of {SELECTIONS}")
    n = min(n_items or len(run_items), len(items))
    return [items[round(j * len(items) / n)] for j in range(n)]


def selection_facts(task: Any, spec: Any, selection: str, per_cell: int, chosen: Sequence[Any]) -> dict[str, Any]:
    """What a result file records about its items: the selection, how many few-shot exemplar blocks they share
    (one per (k, mode): `skill_catalog.compose._exemplars`), and whether they are exactly the items that
    ``emergence run --limit per_cell`` composes for the task (the run's own rule on the task's own spec)."""
    from harness.run.runner import _limited
    from skill_catalog.compose import compose_items

    run_ids = [i.item_id for i in _limited(list(compose_items(task.composition)), per_cell)]
    same = [i.item_id for i in chosen] == run_ids
    return {"selection": selection, "per_cell": per_cell if selection == "per-cell" else None,
            "spec_is_the_tasks": spec == task.composition,
            "exemplar_blocks": len({(i.k, i.mode) for i in chosen}),
            "items_per_k": {k: sum(i.k == k for i in chosen) for k in sorted({i.k for i in chosen})},
            "mean_prompt_chars": sum(len(i.prompt) for i in chosen) / max(1, len(chosen)),
            "items_equal_run_limit": same if selection == "per-cell" else None}


def catalog_corpus() -> list[str]:
    """Text to train the BPE on: natural items (another seed than the benchmarks use) and the symbolic stream."""
    import dataclasses

    from harness.run.cross_entropy import catalog_text
    from harness.run.task_files import CrossEntropyTask, load_task
    from skill_catalog.compose import compose_items

    task = load_task("natural_composite.yaml")
    spec = dataclasses.replace(task.composition, seed=12345, n_shots=0)
    docs = [i.prompt + i.answer + i.stop for i in compose_items(spec)]
    text, _ = catalog_text(CrossEntropyTask("bpe-corpus", 1, "catalog", "symbolic", 4321, 2_000))
    return docs + text


def bpe_tokenizer() -> Any:
    """A GPT-2 style byte-level BPE trained here on catalog text (deterministic for a given catalog)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(catalog_corpus(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", clean_up_tokenization_spaces=False)


def neox100m(tokenizer: str = "bpe") -> Path:
    """Folder of the ~100M random-weight GPT-NeoX with the `bpe` or built-in `char` tokenizer (built once)."""
    key = hashlib.sha256(json.dumps([NEOX100M, tokenizer, BPE_VOCAB, 0]).encode()).hexdigest()[:10]
    folder = BENCH_HOME / f"neox100m-{tokenizer}-{key}"
    if (folder / "done").exists():
        return folder
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from harness.zoo.tokenizer import build_tokenizer

    tok = bpe_tokenizer() if tokenizer == "bpe" else build_tokenizer()
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    config = GPTNeoXConfig(vocab_size=len(tok), bos_token_id=bos, eos_token_id=tok.eos_token_id, **NEOX100M)
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(config).eval()
    return _save_once(folder, model, tok)


def _save_once(folder: Path, model, tok) -> Path:
    """Saves a built model and tokenizer under a temporary name, then renames it to `folder` (marked done)."""
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "done").write_text("ok\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def llama135m() -> Path:
    """Folder of the random-weight Llama of the 135M shape with the local BPE tokenizer (built once)."""
    key = hashlib.sha256(json.dumps([LLAMA135M, "bpe", BPE_VOCAB, 0]).encode()).hexdigest()[:10]
    folder = BENCH_HOME / f"llama135m-bpe-{key}"
    if (folder / "done").exists():
        return folder
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = bpe_tokenizer()
    config = LlamaConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **LLAMA135M)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    return _save_once(folder, model, tok)


def default_shots(model: str) -> int:
    """Few-shot exemplars per prompt: 1 for the built-in models (trained on 128 positions, which hold the
    longest 1-shot symbolic request, 96 tokens, but not 3-shot ones, up to 192), else 3."""
    return 1 if model == "builtin" else 3


def model_folder(name: str, family: str | None, tokenizer: str = "bpe") -> Path:
    """``builtin`` (largest final checkpoint of the family), ``neox100m``, ``llama135m``, or a checkpoint folder."""
    if name == "builtin":
        return largest_checkpoint(family)
    if name == "neox100m":
        return neox100m(tokenizer)
    if name == "llama135m":
        return llama135m()
    path = Path(name).expanduser().resolve()
    if not (path / "config.json").exists():
        sys.exit(f"--model {name!r}: use builtin, neox100m, llama135m or a checkpoint folder with a config.json")
    return path
