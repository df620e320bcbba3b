"""What users of real checkpoints need, on tiny configs: quantized GGUF files, Pythia and trainer layouts,
half precision on CPU, accelerate's offload map, a maximum length, chat templates, and a default corpus."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from harness.analysis.schema import prepare_checkpoints
from harness.model.chat_prompts import WITHOUT_TEMPLATE_NOTE, ChatPrompts, chat_renderer
from harness.checkpoints.discovery import discover
from harness.run.cross_entropy import corpus_path, measure_cross_entropy
from harness.checkpoints.family import resolve_family
from harness.model.hf_model import HFModel, ModelSettings
from harness.model.protocol import GenerationRequest, LoglikelihoodRequest
from harness.run.config import RunConfig
from harness.run.runner import plan_run, run
from harness.storage.run_files import load_run
from harness.run.task_files import CrossEntropyTask, read_yaml, validate
from skill_catalog.errors import UserError
from tiny_models import build_checkpoint, choice_requests, write_llama_gguf

CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")
COMPOSITE = """name: mini-composite
version: 1
kind: composite
skill_set: symbolic
ks: [1, 2]
modes: [chain]
items: {single_per_skill: 1, per_cell: 1}
shots: 1
scoring: [exact_match, multiple_choice, gold_logprob]
max_new_tokens: 4
"""


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("m") / "llama", "llama")


@pytest.fixture(scope="module")
def reference(llama_dir) -> HFModel:
    return HFModel.from_checkpoint(llama_dir, ModelSettings(device="cpu"))


def _close(a: HFModel, b: HFModel, tol: float) -> float:
    requests = choice_requests()[:6]
    diffs = [abs(x.logprob - y.logprob) for x, y in zip(a.loglikelihood(requests), b.loglikelihood(requests))]
    assert all(math.isfinite(d) for d in diffs)
    assert max(diffs) < tol
    return max(diffs)


# ---- quantized GGUF -------------------------------------------------------------------------------

def write_quantized_gguf(path: Path, reference: HFModel, monkeypatch) -> None:
    """The reference Llama as a mixed Q4_0 / Q8_0 file declaring itself Q4_0 (as a Q4_K_M file declares Q4_K_M
    while its embedding and output stay Q8_0 and hold most parameters of a small model)."""
    import gguf
    from gguf.quants import quantize

    class QuantWriter(gguf.GGUFWriter):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)

        def add_tensor(self, name, tensor, **kwargs):
            if tensor.ndim == 2:
                qtype = gguf.GGMLQuantizationType.Q8_0 if name in ("token_embd.weight", "output.weight") \
                    else gguf.GGMLQuantizationType.Q4_0
                tensor, kwargs["raw_dtype"] = quantize(np.ascontiguousarray(tensor, np.float32), qtype), qtype
            super().add_tensor(name, tensor, **kwargs)

    monkeypatch.setattr(gguf, "GGUFWriter", QuantWriter)
    write_llama_gguf(path, reference.model, reference.tokenizer)


def test_quantized_gguf_is_named_by_file_type_hash_and_class(tmp_path, reference, llama_dir, monkeypatch):
    write_quantized_gguf(tmp_path / "tiny-q4.gguf", reference, monkeypatch)
    (ckpt,) = discover(tmp_path / "tiny-q4.gguf")
    (folder,) = discover(llama_dir)
    assert ckpt.dtype == "Q4_0"  # the file's declared type, not its (dominant) Q8_0 embedding's
    assert ckpt.architecture == folder.architecture == "LlamaForCausalLM"
    digest = hashlib.sha256((tmp_path / "tiny-q4.gguf").read_bytes()).hexdigest()
    assert ckpt.checkpoint_id == hashlib.sha256(digest.encode()).hexdigest()


def test_quantized_gguf_loads_dequantized_quietly_and_scores_near_fp32(tmp_path, reference, monkeypatch, capfd):
    write_quantized_gguf(tmp_path / "tiny-q4.gguf", reference, monkeypatch)
    capfd.readouterr()
    loaded = HFModel.from_checkpoint(tmp_path / "tiny-q4.gguf", ModelSettings(device="cpu"))
    assert "de-quantizing" not in capfd.readouterr().err
    assert loaded.compute_dtype_ == "float32"
    _close(loaded, reference, tol=0.05)


# ---- layouts --------------------------------------------------------------------------------------

def _hub_revision(step_folder: Path, source: Path) -> None:
    """A revision stored as `from_pretrained(..., revision=step, cache_dir=step_folder)` leaves it (Pythia README)."""
    repo = step_folder / "models--EleutherAI--pythia-tiny"
    commit = hashlib.sha1(step_folder.name.encode()).hexdigest()
    snapshot, blobs = repo / "snapshots" / commit, repo / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / step_folder.name).write_text(commit)
    for f in source.iterdir():
        blob = blobs / hashlib.sha256(f.read_bytes()).hexdigest()
        blob.write_bytes(f.read_bytes())
        (snapshot / f.name).symlink_to(blob)


def test_pythia_revision_folders_are_discovered_with_steps(tmp_path, llama_dir):
    family = tmp_path / "pythia-tiny"
    for step in (1000, 143000, 3000):
        _hub_revision(family / f"step{step}", llama_dir)
    found = discover(family)
    assert [c.step for c in found] == [1000, 3000, 143000]
    assert [c.label for c in found] == ["pythia-tiny/step1000", "pythia-tiny/step3000", "pythia-tiny/step143000"]
    assert all(c.path.parent.name == "snapshots" and c.tokenizer_path == c.path for c in found)
    members, unresolved = resolve_family([str(family / "step3000")])
    assert not unresolved and members[0].checkpoint.label == "pythia-tiny/step3000"
    assert members[0].size == "pythia-tiny" and members[0].checkpoint.step == 3000
    assert HFModel.from_checkpoint(family / "step1000").loglikelihood(choice_requests()[:1])[0].error is None


def test_training_run_checkpoint_folders_are_discovered_with_steps(tmp_path, llama_dir):
    run_dir = tmp_path / "my-run"
    run_dir.mkdir()
    for f in llama_dir.iterdir():  # the final model and the tokenizer in the run's root
        (run_dir / f.name).write_bytes(f.read_bytes())
    for step in (500, 1500):
        ckpt = run_dir / f"checkpoint-{step}"
        ckpt.mkdir()
        for name in ("config.json", "model.safetensors"):
            (ckpt / name).write_bytes((llama_dir / name).read_bytes())
        (ckpt / "optimizer.pt").write_bytes(b"not a pickle: never opened")
        (ckpt / "rng_state.pth").write_bytes(b"not a pickle either")
        state = {"global_step": step, "num_input_tokens_seen": step * 4096}
        (ckpt / "trainer_state.json").write_text(json.dumps(state))
    found = discover(run_dir)
    assert [(c.label, c.step, c.tokens_seen) for c in found] == [
        ("my-run", None, None), ("my-run/checkpoint-500", 500, 500 * 4096),
        ("my-run/checkpoint-1500", 1500, 1500 * 4096)]
    assert all(c.tokenizer_path == run_dir for c in found)
    members, _ = resolve_family([str(p) for p in sorted(run_dir.glob("checkpoint-*"))])
    assert {m.size for m in members} == {"my-run"}


# ---- dtype, device map ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_runs_on_cpu(llama_dir, reference, dtype):
    half = HFModel.from_checkpoint(llama_dir, ModelSettings(device="cpu", dtype=dtype))
    assert half.compute_dtype_ == dtype
    _close(half, reference, tol=0.02)


def test_offload_device_map_scores_like_one_device(llama_dir, reference, tmp_path):
    settings = ModelSettings(device="cpu", device_map="auto", max_memory=(("cpu", "150KB"),),
                             offload_folder=str(tmp_path / "offload"))
    spread = HFModel.from_checkpoint(llama_dir, settings)
    placed = set(spread.model.hf_device_map.values())
    assert "disk" in placed and placed - {"disk"}, spread.model.hf_device_map
    assert _close(spread, reference, tol=1e-5) < 1e-5


# ---- chat template, maximum length: whole runs ----------------------------------------------------

@pytest.fixture()
def chat_dir(tmp_path, llama_dir) -> Path:
    folder = tmp_path / "instruct"
    folder.mkdir()
    for f in llama_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    tokenizer.chat_template = CHAT
    tokenizer.save_pretrained(folder)
    return folder


def _run(family: Path, tmp_path: Path, **kw):
    (tmp_path / "composite.yaml").write_text(COMPOSITE)
    config = RunConfig(family=(str(family),), tasks=(str(tmp_path / "composite.yaml"),), out=str(tmp_path / "out"),
                       analyze=False, device="cpu", **kw)
    run_dir, failures = run(config)
    assert failures == []
    return run_dir, load_run(run_dir)


def test_chat_template_is_recorded_part_of_the_run_id_and_noted_when_missing(chat_dir, tmp_path):
    plain_dir, plain = _run(chat_dir, tmp_path)
    chat_run_dir, chat = _run(chat_dir, tmp_path, chat_template=True)
    assert plain_dir.name != chat_run_dir.name
    assert json.loads((chat_run_dir / "manifest.json").read_text())["config"]["chat_template"] is True
    assert plain["checkpoints"]["note"].tolist() == [WITHOUT_TEMPLATE_NOTE]
    from harness.analysis.io import write_analysis
    from harness.report.build import write_report

    write_analysis(plain_dir)
    assert f"Note: {WITHOUT_TEMPLATE_NOTE} (1 checkpoint: instruct)" in write_report(plain_dir).read_text()
    assert chat["checkpoints"]["note"].isna().all() and chat["checkpoints"]["chat_template"].all()
    gold = [t["records"].query("metric == 'gold_logprob'").set_index("item_id")["value"] for t in (plain, chat)]
    assert not np.allclose(gold[0].sort_index(), gold[1].sort_index())  # the model saw other prompts


def test_chat_template_wraps_both_likelihood_and_generation_contexts():
    seen = []

    class Recorder:
        def loglikelihood(self, requests):
            seen.extend(r.context for r in requests)
            return []

        def generate_until(self, requests):
            seen.extend(r.context for r in requests)
            return []

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")))
    tokenizer.chat_template = CHAT
    model = ChatPrompts(Recorder(), chat_renderer(tokenizer))
    model.loglikelihood([LoglikelihoodRequest("Q: 2+2?", " 4")])
    model.generate_until([GenerationRequest("Q: 3+3?", ("\n",), 4)])
    assert seen == ["<|user|>Q: 2+2?<|end|><|assistant|>", "<|user|>Q: 3+3?<|end|><|assistant|>"]
    tokenizer.chat_template = None
    with pytest.raises(UserError, match="no chat template"):
        chat_renderer(tokenizer)


def test_max_length_override_turns_long_prompts_into_nan_with_a_reason(llama_dir, tmp_path):
    assert HFModel.from_checkpoint(llama_dir).max_length_ == 128  # the model's own context, from its config
    run_dir, tables = _run(llama_dir, tmp_path, max_length=12)
    records = tables["records"]
    assert tables["checkpoints"]["max_length"].tolist() == [12]
    long = records[records["error"].fillna("").str.contains("too long")]
    assert len(long) and long["value"].isna().all()
    default_dir, _ = _run(llama_dir, tmp_path)
    assert default_dir.name != run_dir.name
    with pytest.raises(UserError, match="outside 2..128"):
        HFModel.from_checkpoint(llama_dir, ModelSettings(max_length=129))


def test_cli_flags_reach_the_run_config():
    import argparse

    from harness.cli.run_command import add_config_flags, config_from_args

    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    args = parser.parse_args(["--chat-template", "--max-length", "2048", "--device-map", "auto", "--dtype", "bfloat16"])
    config = config_from_args(args)
    got = (config.chat_template, config.max_length, config.device_map, config.dtype)
    assert got == (True, 2048, "auto", "bfloat16")


# ---- a measured loss for every model --------------------------------------------------------------

def test_natural_suite_carries_the_shipped_english_corpus(llama_dir, tmp_path):
    plan = plan_run(RunConfig(family=(str(llama_dir),), tasks=("natural_composite.yaml",), limit=1, out=str(tmp_path)))
    (ce,) = [t for t in plan.tasks if isinstance(t, CrossEntropyTask)]
    data = read_yaml(Path("natural_composite.yaml"))
    assert validate(data) == [] and "neither a file" in validate({**data, "cross_entropy": "nope.yaml"})[0]
    folder = corpus_path(ce.source)
    files = sorted(folder.glob("*.txt"))
    assert files and sum(f.stat().st_size for f in files) < 4 << 20
    assert "public domain" in (folder / "README.md").read_text().lower()
    (tmp_path / "mine.txt").write_text("my own held-out text")
    mine = f"name: mine\nversion: 1\nkind: cross_entropy\nsource: {tmp_path / 'mine.txt'}\n"
    (tmp_path / "mine.yaml").write_text(mine)
    named = plan_run(RunConfig(family=(str(llama_dir),), tasks=("natural_composite.yaml", str(tmp_path / "mine.yaml")),
                               limit=1, out=str(tmp_path)))
    assert [t.name for t in named.tasks if isinstance(t, CrossEntropyTask)] == ["mine", ce.name]
    short = CrossEntropyTask(ce.name, ce.version, str(files[0]), "symbolic", 0, 1)
    row = measure_cross_entropy(HFModel.from_checkpoint(llama_dir), short)
    assert row["error"] is None and math.isfinite(row["nats_sum"]) and row["n_bytes"] == files[0].stat().st_size


def test_analysis_loss_is_bits_per_byte_when_tokenizers_differ():
    ckpts = pd.DataFrame({"checkpoint_id": ["a", "b"], "params": [1e6, 2e6], "ce_nats_sum": [300.0, 200.0],
                          "ce_tokens": [100, 50], "ce_bytes": [400, 400], "entropy_floor": [np.nan, np.nan],
                          "tokenizer_hash": ["t1", "t2"]})
    mixed = prepare_checkpoints(ckpts)
    assert (mixed["loss_unit"] == "bits/byte").all()
    assert np.allclose(mixed["loss"], [300 / 400 / math.log(2), 200 / 400 / math.log(2)])
    same = prepare_checkpoints(ckpts.assign(tokenizer_hash="t1"))
    assert (same["loss_unit"] == "nats/token").all() and np.allclose(same["loss"], [3.0, 4.0])
