"""Prints the README's two tables of the built-in family (final checkpoints; one size over training) from a run.

Usage: ``python benchmarks/readme_family_table.py RUN_DIR [--size n1m] [--layout v2|v1]`` where RUN_DIR is the
main job's run directory (``emergence run`` on the built-in family, reference family v2: columns follow k up to 8
and split the failures beyond the trained k into format and skill failures; ``--layout v1 --size n400k`` for a run
of the first family, ``--preset v1``). Every cell is a mean over the run's records (exact match
under greedy generation unless the column says otherwise) or the checkpoint's measured cross-entropy, so the
tables can be checked against any rerun.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from harness.records import answer_failure, checkpoint_loss
from harness.storage.run_files import load_run

HEADER = ("| checkpoint | params | CE | excess | k=1 | conj k=2 held-out | conj k=4 seen/held-out | chain k=2 held-out "
          "| chain k=4 seen/held-out | k=5,6 | gold log-prob conj k=4 held-out |")


def _mean(frame: pd.DataFrame) -> float:
    values = pd.to_numeric(frame["value"], errors="coerce")
    return float(values.mean()) if len(values) else float("nan")


def _rate(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.2f}"


def _cells(records: pd.DataFrame) -> dict[str, float]:
    """The table's cells for one checkpoint's records."""
    em = records[records["metric"] == "exact_match"]
    gold = records[records["metric"] == "gold_logprob"]

    def pick(frame: pd.DataFrame, mode: str, k: int, split: str | None = None) -> float:
        rows = frame[(frame["mode"] == mode) & (frame["k"] == k)]
        return _mean(rows if split is None else rows[rows["split"] == split])

    return {
        "k1": _mean(em[em["k"] == 1]),
        "conj2h": pick(em, "conjunction", 2, "heldout"),
        "conj4s": pick(em, "conjunction", 4, "seen"), "conj4h": pick(em, "conjunction", 4, "heldout"),
        "chain2h": pick(em, "chain", 2, "heldout"),
        "chain4s": pick(em, "chain", 4, "seen"), "chain4h": pick(em, "chain", 4, "heldout"),
        "k56": _mean(em[em["k"].isin([5, 6])]),
        "gold4h": pick(gold, "conjunction", 4, "heldout"),
    }


HEADER_V2 = ("| checkpoint | params | CE | excess | k=1 | conj k=2 held-out | conj k=4 seen/held-out "
             "| conj k=8 seen/held-out | chain k=4 seen/held-out | k=5..8 right | k=5..8 format / skill failures |")


def _cells_v2(records: pd.DataFrame) -> dict[str, float]:
    """The v2 table's cells for one checkpoint's zero-shot records."""
    records = records[pd.to_numeric(records["n_shots"], errors="coerce").fillna(0) == 0]
    em = records[records["metric"] == "exact_match"]

    def pick(mode: str, k: int, split: str) -> float:
        return _mean(em[(em["mode"] == mode) & (em["k"] == k) & (em["split"] == split)])

    beyond = em[em["k"] > 4]
    kinds = answer_failure(beyond).value_counts()
    n = max(1, len(beyond))
    return {"k1": _mean(em[em["k"] == 1]), "conj2h": pick("conjunction", 2, "heldout"),
            "conj4s": pick("conjunction", 4, "seen"), "conj4h": pick("conjunction", 4, "heldout"),
            "conj8s": pick("conjunction", 8, "seen"), "conj8h": pick("conjunction", 8, "heldout"),
            "chain4s": pick("chain", 4, "seen"), "chain4h": pick("chain", 4, "heldout"),
            "beyond": _mean(beyond), "format": kinds.get("format", 0) / n if len(beyond) else float("nan"),
            "skill": kinds.get("skill", 0) / n if len(beyond) else float("nan")}


def _row_v2(label: str, params: float, loss: float, excess: float, c: dict[str, float]) -> str:
    return (f"| {label} | {int(params):,} | {loss:.3f} | {excess:.3f} | {_rate(c['k1'])} | {_rate(c['conj2h'])} "
            f"| {_rate(c['conj4s'])}/{_rate(c['conj4h'])} | {_rate(c['conj8s'])}/{_rate(c['conj8h'])} "
            f"| {_rate(c['chain4s'])}/{_rate(c['chain4h'])} | {_rate(c['beyond'])} "
            f"| {_rate(c['format'])} / {_rate(c['skill'])} |")


def _row(label: str, params: float, loss: float, excess: float, c: dict[str, float]) -> str:
    gold = "n/a" if not np.isfinite(c["gold4h"]) else f"{c['gold4h']:.1f}"
    return (f"| {label} | {int(params):,} | {loss:.3f} | {excess:.3f} | {_rate(c['k1'])} | {_rate(c['conj2h'])} "
            f"| {_rate(c['conj4s'])}/{_rate(c['conj4h'])} | {_rate(c['chain2h'])} "
            f"| {_rate(c['chain4s'])}/{_rate(c['chain4h'])} | {_rate(c['k56'])} | {gold} |")


def tables(run_dir: Path, size: str, layout: str = "v2") -> str:
    """The markdown of both tables."""
    run = load_run(run_dir)
    checkpoints, records = run["checkpoints"].copy(), run["records"]
    loss, _, _ = checkpoint_loss(checkpoints)
    checkpoints["loss"] = loss.to_numpy()
    checkpoints["excess"] = checkpoints["loss"] - checkpoints["entropy_floor"]
    by_checkpoint = dict(tuple(records.groupby("checkpoint_id")))

    row, cells, header = (_row_v2, _cells_v2, HEADER_V2) if layout == "v2" else (_row, _cells, HEADER)

    def lines(rows: pd.DataFrame) -> list[str]:
        return [row(r.label, r.params, r.loss, r.excess, cells(by_checkpoint.get(r.checkpoint_id, records.iloc[:0])))
                for r in rows.itertuples()]

    final = checkpoints.sort_values("step").groupby("size").tail(1).sort_values("params")
    one = checkpoints[checkpoints["size"] == size].sort_values("step")
    rule = "|---" * header.count(" | ") + "|---|"
    out = ["Final checkpoints (last step of each size):", "", header, rule, *lines(final), "",
           f"One size over training ({size}):", "", header, rule, *lines(one)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--size", default="n1m", help="the size followed over training in the second table")
    parser.add_argument("--layout", choices=("v1", "v2"), default="v2", help="columns of the v2 (default) or v1 family")
    args = parser.parse_args()
    print(tables(args.run_dir, args.size, args.layout))


if __name__ == "__main__":
    main()
