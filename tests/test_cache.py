"""The SQLite result cache: keys cover everything that changes a result; concurrent writers both finish."""
from __future__ import annotations

import math
import multiprocessing
import sqlite3

import pytest

from harness.storage.result_cache import ResultCache, cache_key
from harness.model.protocol import LoglikelihoodRequest

BASE = ("w" * 64, "t" * 64, "float32", "loglikelihood", LoglikelihoodRequest("2+2=", " 4"), {"max_length": 2048})


def test_values_round_trip_and_missing_keys_are_absent(tmp_path):
    cache = ResultCache(tmp_path / "c.sqlite")
    cache.put_many({"a": {"logprob": -1.5, "error": None}, "b": [math.nan, "too long"]})
    found = cache.get_many(["a", "b", "zzz"])
    assert found["a"] == {"logprob": -1.5, "error": None}
    assert math.isnan(found["b"][0]) and found["b"][1] == "too long"
    assert "zzz" not in found


def test_put_replaces_and_survives_reopening(tmp_path):
    ResultCache(tmp_path / "c.sqlite").put_many([("k", 1)])
    ResultCache(tmp_path / "c.sqlite").put_many([("k", 2)])
    assert ResultCache(tmp_path / "c.sqlite").get_many(["k"]) == {"k": 2}


def test_cache_file_uses_wal_mode(tmp_path):
    ResultCache(tmp_path / "c.sqlite")
    with sqlite3.connect(tmp_path / "c.sqlite") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("field", range(len(BASE)))
def test_key_changes_when_any_field_changes(field):
    changed = list(BASE)
    changed[field] = {5: {"max_length": 1024}, 4: LoglikelihoodRequest("2+2=", " 5")}.get(field, "other")
    assert cache_key(*changed) != cache_key(*BASE)
    assert cache_key(*BASE) == cache_key(*BASE)


def test_key_ignores_settings_order():
    a = cache_key(*BASE[:5], {"max_new_tokens": 8, "stop": ["\n"]})
    b = cache_key(*BASE[:5], {"stop": ["\n"], "max_new_tokens": 8})
    assert a == b and len(a) == 64


def _writer(path: str, tag: str, n_batches: int) -> None:
    cache = ResultCache(path, timeout_s=0.05)  # short lock waits force the retry path
    for b in range(n_batches):
        cache.put_many({f"{tag}-{b}-{i}": [tag, b, i] for i in range(50)})
        cache.put_many({f"shared-{i}": tag for i in range(20)})


def test_two_concurrent_writers_both_finish(tmp_path):
    path = str(tmp_path / "c.sqlite")
    ResultCache(path)
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_writer, args=(path, tag, 40)) for tag in ("p", "q")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    keys = [f"{tag}-{b}-{i}" for tag in ("p", "q") for b in range(40) for i in range(50)]
    found = ResultCache(path).get_many(keys + [f"shared-{i}" for i in range(20)])
    assert len(found) == len(keys) + 20
    assert found["q-39-49"] == ["q", 39, 49]
