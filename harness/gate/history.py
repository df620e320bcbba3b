"""Monitoring: an append-only SQLite history of checkpoints' item scores, and the changes worth flagging.

`emergence history add RUN` appends every checkpoint of a run (item-level values of one metric and the
corpus cross-entropy) under the next sequence numbers; rows are never updated or deleted, and a
checkpoint already in the history is not added twice. `changes` compares each checkpoint with the one
before it, per skill (k = 1) and per k, with the gate's clustered paired test (two-sided), and flags the
changes whose Benjamini-Hochberg adjusted p-value over the whole history is below alpha.
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd

from harness.analysis.paired import adjust_pvalues, cluster_mean_test, one_sided_p
from harness.analysis.schema import prepare_records
from harness.storage.run_files import load_run
from skill_catalog.errors import UserError

HISTORY_FILE = "history.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (seq INTEGER PRIMARY KEY, added_at REAL, run_id TEXT, checkpoint_id TEXT,
    label TEXT, step REAL, ce_nats_sum REAL, ce_tokens REAL, metric TEXT);
CREATE TABLE IF NOT EXISTS items (seq INTEGER, item_id TEXT, skill_key TEXT, k INTEGER, mode TEXT, value REAL);
"""


def history_path(folder: Path) -> Path:
    """The history file of a results folder."""
    return Path(folder) / HISTORY_FILE


def add_run(run_dir: Path, path: Path, metric: str = "exact_match") -> int:
    """Appends the run's checkpoints (ordered by step, then label) not yet in the history; returns how many."""
    run = load_run(run_dir)
    records = prepare_records(run["records"])
    records = records[records["metric"] == metric]
    if records.empty:
        raise UserError(f"{run_dir} has no {metric!r} records")
    ck = run["checkpoints"].copy()
    ck["step"] = pd.to_numeric(ck.get("step", np.nan), errors="coerce")
    ck = ck.sort_values(["step", "label"], na_position="last", kind="stable")
    path.parent.mkdir(parents=True, exist_ok=True)
    added = 0
    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA)
        known = {row[0] for row in db.execute("SELECT checkpoint_id FROM checkpoints WHERE metric = ?", (metric,))}
        for row in ck.to_dict("records"):
            cid = str(row["checkpoint_id"])
            rows = records[records["checkpoint_id"] == cid]
            if cid in known or rows.empty:
                continue
            cur = db.execute("INSERT INTO checkpoints (added_at, run_id, checkpoint_id, label, step, ce_nats_sum, "
                             "ce_tokens, metric) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (time.time(), Path(run_dir).name, cid, str(row.get("label", cid)),
                              _float(row.get("step")), _float(row.get("ce_nats_sum")), _float(row.get("ce_tokens")),
                              metric))
            db.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)",
                           [(cur.lastrowid, i, s, int(k), m, float(v)) for i, s, k, m, v in
                            rows[["item_id", "skill_key", "k", "mode", "value"]].itertuples(index=False)])
            added += 1
    return added


def _float(x) -> float | None:
    try:
        return None if x is None or not np.isfinite(float(x)) else float(x)
    except (TypeError, ValueError):
        return None


def read_history(path: Path) -> dict[str, pd.DataFrame]:
    """The history's ``checkpoints`` (by sequence) and ``items`` tables."""
    if not path.exists():
        raise UserError(f"no history at {path}; add runs with `emergence history add RUN`")
    with sqlite3.connect(path) as db:
        return {"checkpoints": pd.read_sql("SELECT * FROM checkpoints ORDER BY seq", db),
                "items": pd.read_sql("SELECT * FROM items", db)}


def _scopes(items: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    scope = np.where(items["k"] == 1, "skill=" + items["skill_key"], "k=" + items["k"].astype(str))
    return list(pd.Series(scope, index=items.index).groupby(scope).groups.items())


def trend(history: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Mean score per checkpoint (sequence) and scope (per skill at k = 1, per k above), plus cross-entropy."""
    items = history["items"]
    scope = np.where(items["k"] == 1, "skill=" + items["skill_key"], "k=" + items["k"].astype(str))
    out = items.assign(scope=scope).groupby(["seq", "scope"], as_index=False)["value"].mean()
    return out.merge(history["checkpoints"][["seq", "label"]], on="seq")


def changes(history: dict[str, pd.DataFrame], alpha: float = 0.05) -> pd.DataFrame:
    """Each checkpoint against the previous one, per scope: difference, clustered two-sided p, BH-adjusted p, flag."""
    items, ck = history["items"], history["checkpoints"]
    seqs, rows = list(ck["seq"]), []
    for prev, cur in zip(seqs[:-1], seqs[1:]):
        a = items[items["seq"] == prev].set_index("item_id")
        b = items[items["seq"] == cur].set_index("item_id")
        both = b.join(a[["value"]].rename(columns={"value": "before"}), how="inner")
        for scope, index in _scopes(both.reset_index()):
            g = both.reset_index().loc[index]
            units = (g["skill_key"] if g["skill_key"].nunique() > 1 else g["item_id"]).to_numpy()
            test = cluster_mean_test((g["value"] - g["before"]).to_numpy(float), units)
            p = min(1.0, 2 * min(one_sided_p(test, 0.0, "greater"), one_sided_p(test, 0.0, "less")))
            rows.append({"seq": cur, "scope": scope, "diff": test.estimate, "n_items": test.n, "p": p})
    table = pd.DataFrame(rows, columns=["seq", "scope", "diff", "n_items", "p"])
    table["p_bh"] = adjust_pvalues(table["p"].to_numpy(float), "bh") if len(table) else []
    table["flagged"] = table["p_bh"] < alpha
    return table.merge(ck[["seq", "label"]], on="seq", how="left")


def show_text(history: dict[str, pd.DataFrame], flagged: pd.DataFrame) -> str:
    """One line per checkpoint (mean score per k, cross-entropy) and one per flagged change."""
    tr = trend(history)
    lines = [f"{len(history['checkpoints'])} checkpoints in the history"]
    for r in history["checkpoints"].to_dict("records"):
        cells = tr[(tr["seq"] == r["seq"]) & tr["scope"].str.startswith("k=")]
        ce = r["ce_nats_sum"] / r["ce_tokens"] if r["ce_nats_sum"] and r["ce_tokens"] else float("nan")
        parts = " ".join(f"{s}:{v:.3f}" for s, v in zip(cells["scope"], cells["value"]))
        lines.append(f"  #{r['seq']} {r['label']} ({r['run_id']}): {parts} CE {ce:.4f}")
    hits = flagged[flagged["flagged"]]
    lines.append(f"{len(hits)} significant changes (Benjamini-Hochberg over {len(flagged)} comparisons)")
    lines += [f"  #{r['seq']} {r['label']}: {r['scope']} {'up' if r['diff'] > 0 else 'DOWN'} {r['diff']:+.3f} "
              f"(adjusted p {r['p_bh']:.3g}, {r['n_items']} items)" for r in hits.to_dict("records")]
    return "\n".join(lines)
