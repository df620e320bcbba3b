"""Shared fixtures: a tiny reference family trained once per session, an isolated cache, tiny random-weight
models of three architectures per test module, and a launcher of two data-parallel processes on a free port."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `tiny` preset trained once (about 10 s on 2 cores); its family folder."""
    from harness.zoo.family import build_family
    from harness.zoo.presets import get_preset

    out = tmp_path_factory.mktemp("tiny-family") / "tiny"
    build_family(get_preset("tiny"), out, seed=0, progress=False)
    return out


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own result cache and family home, never the user's."""
    monkeypatch.setenv("EMERGENCE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EMERGENCE_HOME", str(tmp_path / "home"))
    return tmp_path / "cache"


@pytest.fixture
def two_process_launch() -> list[str]:
    """The command prefix that starts two accelerate (gloo) processes on this machine, on a free port.

    accelerate's default port 29500 is shared by every launch on the machine; it falls back to a free port
    only when 29500 is taken at its check, so two launches at once (two test runs) can race for it.
    ``--main_process_port 0`` picks a free port every time.
    """
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--main_process_port", "0", "--mixed_precision", "no", "--dynamo_backend", "no"]


@pytest.fixture(scope="module")
def module_cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """A result cache of the test module, for fixtures that outlive one test (`isolated_cache` is per test)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EMERGENCE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random-weight GPT-NeoX, GPT-2 and Llama (grouped-query attention) checkpoints, by architecture."""
    from tiny_models import build_checkpoint

    root = tmp_path_factory.mktemp("models")
    return {arch: build_checkpoint(root / arch, arch) for arch in ("neox", "gpt2", "llama")}


@pytest.fixture(scope="module")
def neox(models_dir: dict[str, Path], module_cache_dir, tmp_path_factory: pytest.TempPathFactory):
    """An HFModel of the tiny GPT-NeoX checkpoint (batch 16, prefixes of 4 tokens and more reused)."""
    from harness.checkpoints.discovery import discover
    from harness.model.hf_model import HFModel, ModelSettings

    (ckpt,) = discover(models_dir["neox"], hash_cache=tmp_path_factory.mktemp("h") / "h.sqlite")
    return HFModel.from_checkpoint(ckpt, ModelSettings(batch_size=16, prefix_min_tokens=4))
