"""The record types own the Parquet schema: a round trip through Parquet gives back equal records."""
from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from harness.records import CHECKPOINT_COLUMNS, RECORD_COLUMNS, CheckpointRow, Record, records_frame, skill_set_key
from harness.storage.run_files import load_run, write_json, write_table


def _records() -> list[Record]:
    common = dict(checkpoint_id="c1", checkpoint_label="n1/10", task="t", skill_set="symbolic", n_shots=0)
    return [
        Record(item_id="a", skills=("rev", "sft"), k=2, mode="chain", split="seen", metric="exact_match", value=1.0,
               chance=0.25, prediction="x", n_tokens=3, parts_correct=2, parts_total=2, **common),
        Record(item_id="b", skills=("rot",), k=1, mode="single", split="single", metric="gold_logprob",
               value=math.nan, error="CUDA out of memory", logprob_sum=math.nan, **common),
    ]


def _same(a: Record, b: Record) -> bool:
    """Field by field, NaN equal to NaN."""
    def eq(x, y):
        return (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)) or x == y
    return all(eq(getattr(a, f.name), getattr(b, f.name)) for f in fields(Record))


def test_records_survive_a_parquet_round_trip_unchanged(tmp_path: Path):
    records = _records()
    write_table(tmp_path / "records.parquet", records_frame(records))
    back = pd.read_parquet(tmp_path / "records.parquet")
    assert list(back.columns) == list(RECORD_COLUMNS) == [f.name for f in fields(Record)]
    assert str(pq.read_schema(tmp_path / "records.parquet").field("skills").type) == "list<element: string>"
    restored = [Record.from_row(row) for row in back.to_dict("records")]
    assert len(restored) == len(records) and all(_same(a, b) for a, b in zip(records, restored))


def test_a_read_run_gives_skills_as_hashable_tuples_and_every_checkpoint_column(tmp_path: Path):
    write_table(tmp_path / "records.parquet", records_frame(_records()))
    write_table(tmp_path / "checkpoints.parquet", pd.DataFrame([{"checkpoint_id": "c1", "label": "n1/10"}]))
    write_table(tmp_path / "cross_entropy.parquet", pd.DataFrame())
    run = load_run(tmp_path)
    assert list(run["records"]["skills"]) == [("rev", "sft"), ("rot",)]
    assert run["records"].groupby("skills")["value"].size().to_dict() == {("rev", "sft"): 1, ("rot",): 1}
    assert list(run["checkpoints"].columns) == list(CHECKPOINT_COLUMNS)
    assert skill_set_key(("sft", "rev")) == skill_set_key("rev+sft") == "rev+sft"  # old runs' joined strings too


def test_a_checkpoint_row_keeps_every_column_through_its_json_part(tmp_path: Path):
    import json

    row = CheckpointRow("c1", "n1/10", "n1", error="unreadable weights")
    write_json(tmp_path / "part.json", {"checkpoint": row.row()})
    back = json.loads((tmp_path / "part.json").read_text())["checkpoint"]
    assert list(back) == sorted(CHECKPOINT_COLUMNS) and back["error"] == "unreadable weights"
    assert back["params"] is None  # NaN is written as null, never 0
