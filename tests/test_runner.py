"""The runner end to end on the tiny reference family: tables, resume, invariance, failures, offline, shards."""
from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.records import CHECKPOINT_COLUMNS, RECORD_COLUMNS
from harness.run.runner import run
from harness.run.config import RunConfig
from harness.storage.run_files import load_run

COMPOSITE = """name: mini-composite
version: 1
kind: composite
skill_set: symbolic
ks: [1, 2, 4]
modes: [conjunction, chain]
items: {single_per_skill: 1, per_cell: 2}
scoring: [exact_match, partial_credit, multiple_choice, gold_logprob]
max_new_tokens: 24
"""
TEXT = """name: mini-text
version: 1
kind: cross_entropy
source: catalog
skill_set: symbolic
seed: 5
pieces: 40
"""


@pytest.fixture()
def tasks(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "composite.yaml").write_text(COMPOSITE)
    (tmp_path / "text.yaml").write_text(TEXT)
    return str(tmp_path / "composite.yaml"), str(tmp_path / "text.yaml")


def _config(family, tasks, out: Path, **kw) -> RunConfig:
    return RunConfig(family=tuple(map(str, family)), tasks=tasks, out=str(out), analyze=False, **kw)


def _sorted(records: pd.DataFrame) -> pd.DataFrame:
    return records.sort_values(["checkpoint_id", "task", "item_id", "metric"]).reset_index(drop=True)


def test_run_writes_tidy_tables(tiny_family: Path, tasks, tmp_path: Path) -> None:
    run_dir, failures = run(_config([tiny_family], tasks, tmp_path / "out"))
    assert failures == []
    tables = load_run(run_dir)
    records, ckpts = tables["records"], tables["checkpoints"]
    assert len(ckpts) == 6 and ckpts["checkpoint_id"].is_unique
    assert not records.duplicated(["checkpoint_id", "item_id", "metric"]).any()
    n_items = records["item_id"].nunique()
    assert len(records) == 6 * n_items * 7  # 7 metrics per item
    assert records["value"].notna().all() and records["error"].isna().all()
    ce = ckpts["ce_nats_sum"] / ckpts["ce_tokens"]
    assert (ce > ckpts["entropy_floor"]).all() and ckpts["entropy_floor"].between(0.6, 1.1).all()
    gold = records[records["metric"] == "gold_logprob"]
    assert (gold["value"] < 0).all() and (gold["n_tokens"] > 0).all()
    assert set(records["split"]) == {"single", "seen", "heldout"}
    manifest = (run_dir / "manifest.json").read_text()
    assert '"packages"' in manifest and '"git_commit"' in manifest and '"allow_pickle": false' in manifest
    assert '"git_dirty"' in manifest
    written = {name: pd.read_parquet(run_dir / f"{name}.parquet") for name in ("records", "checkpoints")}
    assert list(written["records"].columns) == list(RECORD_COLUMNS)  # the dataclass fields are the schema
    assert list(written["checkpoints"].columns) == list(CHECKPOINT_COLUMNS)
    assert all(isinstance(s, tuple) and len(s) == k for s, k in zip(records["skills"], records["k"]))


def test_batch_size_and_order_do_not_change_numbers(tiny_family: Path, tasks, tmp_path: Path, monkeypatch) -> None:
    folder = [tiny_family / "n20k"]
    monkeypatch.setenv("EMERGENCE_CACHE_DIR", str(tmp_path / "c1"))
    a, _ = run(_config(folder, tasks, tmp_path / "a", batch_size="1"))
    monkeypatch.setenv("EMERGENCE_CACHE_DIR", str(tmp_path / "c2"))
    b, _ = run(_config(folder, tasks, tmp_path / "b", batch_size="16"))
    ra, rb = _sorted(load_run(a)["records"]), _sorted(load_run(b)["records"])
    assert (ra["value"] - rb["value"]).abs().max() < 1e-5
    ca, cb = load_run(a)["checkpoints"], load_run(b)["checkpoints"]
    assert abs(float(ca["ce_nats_sum"][0]) - float(cb["ce_nats_sum"][0])) < 1e-3


def test_failing_checkpoints_are_recorded_as_nan_and_others_scored(tiny_family: Path, tasks, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_family / "n20k" / "step00064", broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    no_tok = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_family / "n60k" / "step00064", no_tok)
    (no_tok / "tokenizer.json").unlink()
    family = [tiny_family / "n20k", tmp_path / "missing", broken, no_tok]
    run_dir, failures = run(_config(family, tasks, tmp_path / "out"))
    assert len(failures) == 3 and all("\n" not in line for line in failures)
    ckpts = load_run(run_dir)["checkpoints"]
    bad = ckpts[ckpts["error"].notna()]
    assert len(bad) == 3 and bad["ce_nats_sum"].isna().all()
    good = ckpts[ckpts["error"].isna()]  # n20k/ holds the final checkpoint and two step folders
    assert len(good) == 3 and good["ce_nats_sum"].map(math.isfinite).all()
    # both scoring shortcuts held on the built-in architecture: no reason recorded for turning one off
    assert good["prefix_reuse_off"].isna().all() and good["tree_packing_off"].isna().all()


def test_fail_fast_stops_with_one_line(tiny_family: Path, tasks, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "harness", "run", "--family", str(tmp_path / "nope"), str(tiny_family / "n20k"),
           "--tasks", *tasks, "--out", str(tmp_path / "o"), "--no-analyze", "--fail-fast"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: ") and "nope" in done.stderr


def test_run_succeeds_with_network_blocked(tiny_family: Path, tasks, tmp_path: Path, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise OSError("network is blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    run_dir, failures = run(_config([tiny_family / "n20k"], tasks, tmp_path / "out"))
    assert failures == [] and os.environ["HF_HUB_OFFLINE"] == "1"
    assert len(load_run(run_dir)["records"]) > 0


def test_rerun_reuses_everything(tiny_family: Path, tasks, tmp_path: Path) -> None:
    config = _config([tiny_family / "n20k"], tasks, tmp_path / "out")
    first, _ = run(config)
    (first / "parts").joinpath("checkpoint-" + load_run(first)["checkpoints"]["checkpoint_id"][0] + ".json").unlink()
    second, _ = run(config)  # the part is gone, so the checkpoint is rescored, all from the cache
    assert first == second
    ckpt = load_run(second)["checkpoints"].iloc[0]
    assert ckpt["cache_misses"] == 0 and ckpt["cache_hits"] > 0


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(tiny_family: Path, tasks, tmp_path: Path) -> None:
    env = {**os.environ, "EMERGENCE_CACHE_DIR": str(tmp_path / "cache-killed"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "harness", "run", "--family", str(tiny_family), "--tasks", *tasks,
           "--out", str(tmp_path / "killed"), "--no-analyze", "--batch-size", "4"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((tmp_path / "killed").glob("*/parts/checkpoint-*"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list((tmp_path / "killed").glob("*/records.parquet")), "the run finished before it was killed"
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    killed_dir = next((tmp_path / "killed").iterdir())
    clean_dir, _ = run(_config([tiny_family], tasks, tmp_path / "clean"))
    a, b = _sorted(load_run(killed_dir)["records"]), _sorted(load_run(clean_dir)["records"])
    assert len(a) == len(b)
    pd.testing.assert_frame_equal(a.drop(columns=["value", "logprob_sum"]), b.drop(columns=["value", "logprob_sum"]))
    assert (a["value"] - b["value"]).abs().max() < 1e-5


def test_shards_merge_into_the_full_run(tiny_family: Path, tasks, tmp_path: Path) -> None:
    family = [tiny_family / "n20k", tiny_family / "n60k"]
    full, _ = run(_config(family, tasks, tmp_path / "full"))
    one, _ = run(_config(family, tasks, tmp_path / "s", shard="1/2"))
    two, _ = run(_config(family, tasks, tmp_path / "s", shard="2/2"))
    done = subprocess.run([sys.executable, "-m", "harness", "merge", str(tmp_path / "merged"), str(one), str(two)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    merged = _sorted(load_run(tmp_path / "merged")["records"])
    pd.testing.assert_frame_equal(merged, _sorted(load_run(full)["records"]))


@pytest.mark.slow
def test_two_accelerate_processes_equal_one(tiny_family: Path, tasks, tmp_path: Path,
                                           two_process_launch: list[str]) -> None:
    family = [str(tiny_family / "n20k" / "step00064")]
    single, _ = run(_config(family, tasks, tmp_path / "one"))
    env = {**os.environ, "EMERGENCE_CACHE_DIR": str(tmp_path / "cache-dp"), "OMP_NUM_THREADS": "1"}
    cmd = [*two_process_launch, "-m", "harness", "run", "--family", *family, "--tasks", *tasks,
           "--out", str(tmp_path / "two"), "--no-analyze"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rank 1 of 2" in done.stdout, "the second process never ran"
    parallel = next((tmp_path / "two").iterdir())
    a, b = _sorted(load_run(parallel)["records"]), _sorted(load_run(single)["records"])
    pd.testing.assert_frame_equal(a.drop(columns=["value", "logprob_sum"]), b.drop(columns=["value", "logprob_sum"]))
    assert (a["value"] - b["value"]).abs().max() < 1e-5


def test_check_drift_records_batch_size_one_difference(tiny_family: Path, tasks, tmp_path: Path) -> None:
    run_dir, _ = run(_config([tiny_family / "n20k" / "step00064"], tasks, tmp_path / "out", check_drift=True,
                             batch_size="16"))
    ckpt = load_run(run_dir)["checkpoints"].iloc[0]
    assert 0 <= float(ckpt["drift"]) < 1e-5
    assert '"drift"' in (run_dir / "manifest.json").read_text()


def test_plain_scoring_gives_the_same_records_and_says_so(tiny_family: Path, tasks, tmp_path: Path) -> None:
    family = [tiny_family / "n20k" / "step00064"]
    fast, _ = run(_config(family, tasks, tmp_path / "fast", cache_dir=str(tmp_path / "c1")))
    plain, _ = run(_config(family, tasks, tmp_path / "plain", cache_dir=str(tmp_path / "c2"), plain_scoring=True))
    assert fast.name == plain.name  # how rows are run is not part of what is measured
    a, b = _sorted(load_run(fast)["records"]), _sorted(load_run(plain)["records"])
    assert len(a) == len(b) and (a["value"] - b["value"]).abs().max() < 1e-5
    shortcuts = load_run(plain)["checkpoints"].iloc[0]
    assert shortcuts["prefix_reuse_off"] == shortcuts["tree_packing_off"] == "off in the settings (plain scoring)"
    assert load_run(fast)["checkpoints"]["tree_packing_off"].isna().all()


def test_bos_policy_is_part_of_the_run_id_and_recorded(tiny_family: Path, tasks, tmp_path: Path) -> None:
    family = [tiny_family / "n20k" / "step00064"]
    auto, _ = run(_config(family, tasks, tmp_path / "auto", cache_dir=str(tmp_path / "c")))
    never, _ = run(_config(family, tasks, tmp_path / "never", cache_dir=str(tmp_path / "c"), bos="never"))
    assert auto.name != never.name  # a different BOS policy is a different measurement
    ckpt = load_run(auto)["checkpoints"].iloc[0]
    assert not ckpt["bos"] and ckpt["bos_rule"].startswith("never (") and ckpt["ce_window"] > 0
    assert pd.isna(ckpt["chunked_logits_off"])  # the output layer ran only where scores were needed
    manifest = (auto / "manifest.json").read_text()
    assert '"bos": "auto"' in manifest and '"bos_rule"' in manifest
    assert '"bos": "never"' in (never / "manifest.json").read_text()
    records = load_run(auto)["records"]
    mc = records[records["metric"] == "mc_accuracy"]
    assert mc["choices_only"].isin([0.0, 1.0]).all()
    assert records.loc[records["metric"] == "exact_match", "choices_only"].isna().all()
