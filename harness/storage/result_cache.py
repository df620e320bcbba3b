"""A SQLite key-value cache of JSON results, safe for several processes writing at once.

Keys are sha256 digests of everything that can change a result (`cache_key`); values are JSON.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

KEY_VERSION = 2
"""Bumped when the meaning of a cached result changes, which invalidates every old key (2: a gold
answer's stop is any token starting with the stop string; BOS policy and window in the settings)."""
_CHUNK = 500  # rows per transaction: keeps write locks short and stays under SQLite's variable limit
_ATTEMPTS = 12
T = TypeVar("T")


def default_cache_dir() -> Path:
    """The cache folder: ``$EMERGENCE_CACHE_DIR`` or ``~/.cache/emergence-harness``."""
    env = os.environ.get("EMERGENCE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "emergence-harness"


def _plain(obj: Any) -> Any:
    """NamedTuples become dicts so that a key names its fields; other values pass through."""
    if hasattr(obj, "_asdict"):
        return {k: _plain(v) for k, v in obj._asdict().items()}
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def cache_key(
    weight_hash: str,
    tokenizer_hash: str,
    dtype: str,
    request_type: str,
    request: Any,
    settings: Mapping[str, Any],
) -> str:
    """The cache key of one request to one model.

    Args:
        weight_hash: `Checkpoint.checkpoint_id`.
        tokenizer_hash: Hash of the tokenizer files.
        dtype: Compute dtype, e.g. ``"float32"``.
        request_type: ``"loglikelihood"``, ``"loglikelihood_rolling"`` or ``"generate_until"``.
        request: The request (a NamedTuple or JSON-serializable value).
        settings: Everything else that changes the result (max length, generation settings, ...).

    Returns:
        A hex sha256 digest of the canonical JSON of all arguments.
    """
    payload = [KEY_VERSION, weight_hash, tokenizer_hash, dtype, request_type, _plain(request), _plain(settings)]
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _is_lock_error(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _retry(fn: Callable[[], T]) -> T:
    """Run `fn`, retrying with jittered backoff while the database is locked by another writer."""
    jitter = random.Random(os.getpid() ^ time.monotonic_ns())
    for attempt in range(_ATTEMPTS):
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not _is_lock_error(exc) or attempt == _ATTEMPTS - 1:
                raise
            time.sleep(min(2.0, 0.01 * 2**attempt) * (0.5 + jitter.random()))
    raise AssertionError("unreachable")


class ResultCache:
    """A table of key -> JSON value in one SQLite file (WAL mode, busy timeout, short transactions).

    A connection is opened per call, so an instance can be shared with forked worker processes.
    """

    def __init__(self, path: str | Path, timeout_s: float = 30.0) -> None:
        """Open (and create if needed) the cache.

        Args:
            path: The SQLite file; its folder is created.
            timeout_s: How long one statement waits for a lock before retrying.
        """
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _retry(self._create)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
        return conn

    def _create(self) -> None:
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        finally:
            conn.close()

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """Look up keys.

        Returns:
            The decoded value of every key found; missing keys are absent.
        """
        found: dict[str, Any] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start:start + _CHUNK]
            sql = f"SELECT key, value FROM results WHERE key IN ({','.join('?' * len(chunk))})"
            rows = _retry(lambda: self._read(sql, chunk))
            found.update((k, json.loads(v)) for k, v in rows)
        return found

    def _read(self, sql: str, params: Sequence[str]) -> list[tuple[str, str]]:
        conn = self._connect()
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def put_many(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> int:
        """Store values (JSON-serializable; NaN allowed), replacing existing ones.

        Returns:
            Number of items written.
        """
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        rows = [(k, json.dumps(_plain(v), sort_keys=True)) for k, v in pairs]
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start:start + _CHUNK]
            _retry(lambda: self._write(chunk))
        return len(rows)

    def _write(self, rows: Sequence[tuple[str, str]]) -> None:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR REPLACE INTO results (key, value) VALUES (?, ?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite already rolled back on a full disk; a second ROLLBACK would
                    conn.execute("ROLLBACK")  # raise "cannot rollback" and hide the real error
                raise
        finally:
            conn.close()
