"""The CLI's one place for failures: any exception that a person (not a bug) causes becomes a `UserError`.

Input and environment failures (a file that cannot be read or written, a full disk, a corrupt table,
a damaged SQLite cache, memory exhausted by an input) are translated here, once, into one line and
exit status 2; anything else is a bug in the harness and keeps its traceback.
"""
from __future__ import annotations

import errno
import sqlite3

from skill_catalog.errors import UserError

_FIXES = {
    errno.ENOSPC: "free disk space (or pass --out / --cache-dir on another disk) and rerun; finished work is kept",
    errno.EACCES: "pass a folder you can write to, or fix its permissions",
    errno.EPERM: "pass a folder you can write to, or fix its permissions",
    errno.EROFS: "pass a folder on a writable file system",
    errno.ENOENT: "check the path",
    errno.EEXIST: "pass a folder, not a file",
    errno.ENOTDIR: "pass a folder, not a file",
    errno.EISDIR: "pass a file, not a folder",
}


def as_user_error(exc: BaseException) -> UserError | None:
    """The `UserError` a person should see for `exc`, or None when `exc` is a bug (keep its traceback)."""
    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, UnicodeDecodeError):
        return UserError(f"a file is not UTF-8 text ({exc.reason} at byte {exc.start}); fix: save it as UTF-8")
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        fix = _FIXES.get(exc.errno or -1, "check the path and the disk, then rerun")
        return UserError(f"{where}{exc.strerror or exc}; fix: {fix}")
    if isinstance(exc, sqlite3.Error):
        full = "full" in str(exc).lower()
        fix = _FIXES[errno.ENOSPC] if full else "delete the damaged cache file (results are recomputed) or pass --cache-dir"
        return UserError(f"result cache: {exc}; fix: {fix}")
    if isinstance(exc, MemoryError):
        return UserError("out of memory; fix: lower --batch-size or the task's sizes, or use a machine with more memory")
    return None
