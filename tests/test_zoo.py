"""The reference family: training, offline reload, manifest, resume, and the shipped family's freshness."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

import skill_catalog
from harness.zoo.family import SHIPPED_DIR, build_family, load_manifest
from harness.zoo.presets import get_preset
from harness.zoo.tokenizer import build_tokenizer
from skill_catalog.errors import UserError
from skill_catalog.training_text import TRAIN_SEED, TextSpec, spec_fields, text_hash, text_spec_for


def test_tokenizer_round_trips_training_text() -> None:
    from itertools import islice

    from skill_catalog.training_text import iter_pieces, stream_text

    tok = build_tokenizer()
    text = stream_text(list(islice(iter_pieces(TextSpec(), 3), 300)))
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids and tok.decode(ids) == text and len(tok) == 24


def test_tiny_family_reloads_offline_and_manifest_is_complete(tiny_family: Path) -> None:
    manifest = load_manifest(tiny_family)
    preset = get_preset("tiny")
    assert len(manifest["checkpoints"]) == len(preset.sizes) * len(preset.checkpoint_steps())
    keys = {"label", "size", "path", "step", "tokens_seen", "params", "params_nonembedding", "seed",
            "catalog_version", "text_hash", "text_entropy_nats_per_token"}
    for row in manifest["checkpoints"]:
        assert keys <= set(row)
        folder = tiny_family / row["path"]
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        assert sum(p.numel() for p in model.parameters()) == row["params"]
        assert tok.eos_token == "\n" and json.loads((folder / "train_meta.json").read_text())["step"] == row["step"]
    assert not list(tiny_family.rglob("*.partial")) and not list(tiny_family.rglob(".resume"))


def test_loss_decreases_with_steps(tiny_family: Path) -> None:
    from harness.zoo.data import heldout_text

    tok = build_tokenizer()
    text, _ = heldout_text(TextSpec(), 7, 400, tok)
    windows = torch.tensor(tok(text, add_special_tokens=False)["input_ids"][:1280]).view(10, 128)
    for size in ("n20k", "n60k"):
        losses = []
        for folder in (tiny_family / size / "step00064", tiny_family / size / "step00100", tiny_family / size):
            model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
            with torch.no_grad():
                losses.append(float(model(input_ids=windows, labels=windows).loss))
        assert losses[0] > losses[1] + 0.02 > losses[2] + 0.04, (size, losses)


def test_output_folder_of_other_family_is_refused(tiny_family: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="different family"):
        build_family(get_preset("tiny"), tiny_family, seed=1, progress=False)
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        build_family(get_preset("tiny"), tmp_path / "stuff", progress=False)


def test_sizes_trained_side_by_side_have_the_weights_of_a_one_process_build(tiny_family: Path, tmp_path: Path) -> None:
    out, finished = tmp_path / "side", []
    build_family(get_preset("tiny"), out, seed=0, progress=False, workers=2, on_size=finished.append)
    assert sorted(r.size.name for r in finished) == ["n20k", "n60k"] and all(len(r.losses) == 200 for r in finished)
    files = sorted(p.relative_to(tiny_family) for p in tiny_family.rglob("model.safetensors"))
    assert files == sorted(p.relative_to(out) for p in out.rglob("model.safetensors")) and len(files) == 6
    for f in files:
        a, b = load_file(str(tiny_family / f)), load_file(str(out / f))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f
    assert load_manifest(out)["checkpoints"] == load_manifest(tiny_family)["checkpoints"]


def test_zero_workers_is_one_line_error() -> None:
    done = subprocess.run([sys.executable, "-m", "harness", "zoo", "build", "--preset", "tiny", "--workers", "0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.strip().startswith("error: --workers 0: give 1 or more")


def test_unknown_preset_is_one_line_error() -> None:
    done = subprocess.run([sys.executable, "-m", "harness", "zoo", "build", "--preset", "huge"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.strip() == "error: unknown preset 'huge'; use one of: tiny, default, v2-tiny, v1, large"


@pytest.mark.slow
def test_kill_and_resume_gives_identical_weights(tiny_family: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    cmd = [sys.executable, "-m", "harness", "zoo", "build", "--preset", "tiny", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "n60k" / ".resume" / "state.json").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "family.yaml").exists(), "the build finished before it could be killed"
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    for size in ("n20k", "n60k"):
        a = load_file(str(tiny_family / size / "model.safetensors"))
        b = load_file(str(out / size / "model.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), size


def test_shipped_default_family_matches_catalog() -> None:
    """A catalog or generator change must come with a rebuilt family (`emergence zoo build --preset default`)."""
    manifest = yaml.safe_load((SHIPPED_DIR / "default" / "family.yaml").read_text())
    preset = get_preset("default")
    spec = text_spec_for(preset.skill_set)
    assert manifest["family"] == "default" and manifest["catalog_version"] == skill_catalog.catalog_version(spec.skill_set)
    expected = text_hash(spec, TRAIN_SEED, preset.max_steps * preset.tokens_per_step // 20)
    assert manifest["text_hash"] == expected
    assert manifest["training_text"]["spec"] == json.loads(json.dumps(spec_fields(spec)))
    sizes = {row["size"] for row in manifest["checkpoints"]}
    assert len(sizes) >= 7
    params = [row["params"] for row in manifest["checkpoints"] if row["final"]]
    assert max(params) / min(params) >= 100
    for row in manifest["checkpoints"]:
        assert (SHIPPED_DIR / "default" / row["path"] / "model.safetensors").exists()


def test_checkpoint_steps_are_log_then_even() -> None:
    steps = get_preset("v1").checkpoint_steps()
    assert steps == (64, 256, 1000, 2000, 3000, 4000)
    assert replace(get_preset("tiny"), steps=1000).checkpoint_steps()[-1] == 1000


def test_checkpoint_steps_of_short_runs_are_real_steps() -> None:
    for name in ("tiny", "default", "v1", "large"):
        for steps in (1, 2, 3, 4, 7, 50):
            saved = replace(get_preset(name), steps=steps).checkpoint_steps()
            assert saved[-1] == steps and all(1 <= s <= steps for s in saved), (name, steps, saved)


@pytest.mark.slow
def test_two_data_parallel_processes_train_like_one(tiny_family: Path, tmp_path: Path,
                                                    two_process_launch: list[str]) -> None:
    out = tmp_path / "dp"
    cmd = [*two_process_launch, "-m", "harness", "zoo", "build", "--preset", "tiny", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes of 2 threads each on 2 cores run 10x slower
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "family manifest" in done.stdout and (out / "family.yaml").exists()
    for size in ("n20k", "n60k"):
        a = load_file(str(tiny_family / size / "model.safetensors"))
        b = load_file(str(out / size / "model.safetensors"))
        diff = max(float((a[k] - b[k]).abs().max()) for k in a)
        assert 0 < diff < 5e-3, (size, diff)  # two half-batches averaged: equal up to float rounding
