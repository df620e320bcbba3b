"""Reference family v2: the preset's per-size rule, its context length, build seeds, and a tiny v2 build."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoTokenizer

from harness.run.task_files import load_task
from harness.zoo.family import SHIPPED_DIR, _identity, build_family, load_manifest
from harness.zoo.presets import approx_params, get_preset
from harness.zoo.tokenizer import build_tokenizer
from skill_catalog import skills
from skill_catalog.compose import compose_items
from skill_catalog.training_text import text_spec_for


@pytest.fixture(scope="module")
def v2_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("v2-tiny") / "v2-tiny"
    build_family(get_preset("v2-tiny"), out, seed=0, progress=False)
    return out


def test_v2_preset_spans_100x_with_more_steps_and_lower_lr_for_larger_sizes() -> None:
    preset = get_preset("default")
    params = [approx_params(s.d_model, s.n_layers) for s in preset.sizes]
    steps = [preset.steps_of(s) for s in preset.sizes]
    lrs = [s.peak_lr for s in preset.sizes]
    assert len(preset.sizes) >= 7 and params[-1] / params[0] >= 100 and params == sorted(set(params))
    assert steps == sorted(steps) and steps[-1] == preset.max_steps and lrs == sorted(lrs, reverse=True)
    for size in preset.sizes:
        saved = preset.checkpoint_steps(preset.steps_of(size))
        assert len(saved) >= 4 and saved[-1] == preset.steps_of(size)
    fp16_bytes = sum(2 * approx_params(s.d_model, s.n_layers) * len(preset.checkpoint_steps(preset.steps_of(s)))
                     for s in preset.sizes)
    assert fp16_bytes < 24e6  # the shipped family's 25 MB, with room for configs and tokenizers


def test_v2_context_fits_two_shot_prompts_at_k8() -> None:
    task = load_task("tasks/symbolic_v2_shots.yaml")
    tok = build_tokenizer("symbolic_v2")
    items = [i for i in compose_items(task.composition) if i.k == 8]
    assert {i.n_shots for i in items} == {0, 1, 2}
    longest = max(len(tok(i.prompt, add_special_tokens=False)["input_ids"]) for i in items)
    answer = max(len(tok(i.answer + i.stop, add_special_tokens=False)["input_ids"]) for i in items)
    for name in ("default", "v2-tiny"):
        assert longest + max(answer, task.max_new_tokens) <= get_preset(name).seq_len, (name, longest)


def test_build_seed_changes_text_and_initialisation_but_seed_0_is_the_shipped_identity() -> None:
    preset, spec = get_preset("default"), text_spec_for("symbolic_v2")
    a, b = _identity(preset, 0, spec), _identity(preset, 1, spec)
    assert a["seed"] != b["seed"] and a["text_seed"] != b["text_seed"] and a["text_hash"] != b["text_hash"]
    shipped = json.loads((SHIPPED_DIR / "default" / "build.json").read_text())
    assert json.loads(json.dumps(a)) == shipped


def test_v2_tiny_family_is_trained_on_v2_text_and_reloads(v2_tiny: Path) -> None:
    manifest = load_manifest(v2_tiny)
    preset = get_preset("v2-tiny")
    assert manifest["catalog_version"] == "2" and manifest["training_text"]["spec"]["split_rule"] == "pairs"
    assert len(manifest["checkpoints"]) == sum(len(preset.checkpoint_steps(preset.steps_of(s))) for s in preset.sizes)
    for row, size in zip(manifest["checkpoints"][::3], preset.sizes):  # the size rule's parameter count is exact
        assert row["params"] == approx_params(size.d_model, size.n_layers, vocab_size=32)
    folder = v2_tiny / manifest["checkpoints"][-1]["path"]
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert all(len(tok(s.tag, add_special_tokens=False)["input_ids"]) == 1 for s in skills("symbolic_v2"))
    assert AutoConfig.from_pretrained(folder, local_files_only=True).max_position_embeddings == preset.seq_len
