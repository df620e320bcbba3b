"""Class 1 and 3: a number is never reported for weights that were not loaded, and a failure names its cause.

Missing, unexpected and mis-shaped tensors (safetensors and GGUF) fail their checkpoint with one line
and leave nothing in the cache; tied embeddings still load; NaN weights are reported as NaN weights; a
copy that shares its weights with a good checkpoint but fails is reported under its own identity.
"""
from __future__ import annotations

import math
import shutil
import sqlite3
from pathlib import Path

import pytest
import torch

from harness.checkpoints.discovery import discover
from harness.model.hf_model import HFModel
from harness.run.config import RunConfig
from harness.run.runner import run
from harness.storage.run_files import load_run
from skill_catalog.errors import UserError

from .helpers import damaged_copy, write_tasks


def _step(tiny_family: Path) -> Path:
    return tiny_family / "n20k" / "step00064"


def _config(family, tasks, out: Path, cache: Path) -> RunConfig:
    return RunConfig(family=tuple(map(str, family)), tasks=tasks, out=str(out), analyze=False, cache_dir=str(cache))


def _cached_rows(cache: Path) -> int:
    path = cache / "results.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _drop(name: str):
    return lambda tensors: tensors.pop(name)


def _add(name: str, shape: tuple[int, ...]):
    return lambda tensors: tensors.__setitem__(name, torch.zeros(shape))


def _reshape(name: str):
    return lambda tensors: tensors.__setitem__(name, torch.zeros(tensors[name].shape[0] + 1, *tensors[name].shape[1:]))


DAMAGE = {
    "missing-output-head": (_drop("embed_out.weight"), "missing"),
    "missing-final-norm": (_drop("gpt_neox.final_layer_norm.weight"), "missing gpt_neox.final_layer_norm.weight"),
    "unexpected-tensor": (_add("gpt_neox.extra.weight", (3, 3)), "unexpected gpt_neox.extra.weight"),
    "wrong-shape": (_reshape("gpt_neox.final_layer_norm.weight"), "wrong shape gpt_neox.final_layer_norm.weight"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_weights_not_matching_the_architecture_fail_alone_and_cache_nothing(tiny_family, tmp_path, damage):
    mutate, reason = DAMAGE[damage]
    bad = damaged_copy(_step(tiny_family), tmp_path / damage, mutate)
    tasks = write_tasks(tmp_path / "tasks")
    run_dir, failures = run(_config([bad], tasks, tmp_path / "out", tmp_path / "cache"))
    assert len(failures) == 1 and "\n" not in failures[0]
    assert reason in failures[0] and "do not match the architecture" in failures[0]
    assert _cached_rows(tmp_path / "cache") == 0  # no random-weight score survives in the cache
    tables = load_run(run_dir)
    assert tables["records"].empty and tables["checkpoints"]["error"].notna().all()


def test_a_good_sibling_is_scored_next_to_a_damaged_one(tiny_family, tmp_path):
    bad = damaged_copy(_step(tiny_family), tmp_path / "bad", _drop("embed_out.weight"))
    tasks = write_tasks(tmp_path / "tasks")
    run_dir, failures = run(_config([bad, tiny_family / "n60k" / "step00064"], tasks, tmp_path / "out", tmp_path / "c"))
    assert len(failures) == 1 and failures[0].startswith("bad:")
    ckpts = load_run(run_dir)["checkpoints"].set_index("label")
    assert math.isfinite(ckpts.loc["n60k/step00064", "ce_nats_sum"]) and math.isnan(ckpts.loc["bad", "ce_nats_sum"])


def test_tied_output_embedding_is_not_missing(tiny_family, tmp_path):
    tied = damaged_copy(_step(tiny_family), tmp_path / "tied", _drop("embed_out.weight"), {"tie_word_embeddings": True})
    model = HFModel.from_checkpoint(tied)
    assert model.model.get_output_embeddings().weight.data_ptr() == model.model.get_input_embeddings().weight.data_ptr()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_nan_weights_are_reported_as_nan_weights(tiny_family, tmp_path, value):
    def poison(tensors: dict) -> None:
        tensors["gpt_neox.final_layer_norm.weight"][3] = value  # one entry is enough

    bad = damaged_copy(_step(tiny_family), tmp_path / "nan", poison)
    with pytest.raises(UserError) as error:
        HFModel.from_checkpoint(bad)
    message = str(error.value)
    assert "gpt_neox.final_layer_norm.weight" in message and "NaN" in message
    assert "not a causal" not in message and "\n" not in message


def test_a_failing_copy_of_good_weights_reports_its_own_failure(tiny_family, tmp_path):
    good = shutil.copytree(_step(tiny_family), tmp_path / "good")
    broken = shutil.copytree(_step(tiny_family), tmp_path / "broken")  # same weights, unusable tokenizer
    (broken / "tokenizer.json").write_text("{not json")
    tasks = write_tasks(tmp_path / "tasks")
    for order in ([good, broken], [broken, good]):
        run_dir, failures = run(_config(order, tasks, tmp_path / f"out-{order[0].name}", tmp_path / "c"))
        assert len(failures) == 1 and failures[0].startswith("broken:") and "tokenizer" in failures[0]
        tables = load_run(run_dir)
        ckpts = tables["checkpoints"].set_index("label")
        assert ckpts.loc["broken", "checkpoint_id"] != ckpts.loc["good", "checkpoint_id"]
        assert isinstance(ckpts.loc["broken", "error"], str) and math.isnan(ckpts.loc["broken", "ce_nats_sum"])
        assert _missing(ckpts.loc["good", "error"]) and math.isfinite(ckpts.loc["good", "ce_nats_sum"])
        broken_id = ckpts.loc["broken", "checkpoint_id"]
        assert tables["records"].query("checkpoint_id == @broken_id").empty  # no borrowed scores


def test_gguf_with_a_missing_tensor_fails_with_its_name(tmp_path, monkeypatch):
    import gguf
    from tiny_models import build_checkpoint, write_llama_gguf  # tests/ is on sys.path under pytest
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    source = build_checkpoint(tmp_path / "llama", "llama")
    model = AutoModelForCausalLM.from_pretrained(source)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(source)
    real = gguf.GGUFWriter.add_tensor

    def skip_norm(self, name, *args, **kwargs):
        return None if name == "output_norm.weight" else real(self, name, *args, **kwargs)

    monkeypatch.setattr(gguf.GGUFWriter, "add_tensor", skip_norm)
    write_llama_gguf(tmp_path / "tiny.gguf", model, tokenizer)
    (ckpt,) = discover(tmp_path / "tiny.gguf")
    with pytest.raises(UserError, match="missing model.norm.weight"):
        HFModel.from_checkpoint(ckpt)
