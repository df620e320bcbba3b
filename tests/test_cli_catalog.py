"""The catalog-side CLI: listing, rendering, exporting, validating, and one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from harness.cli.main import main

TASK = Path(__file__).resolve().parent.parent / "tasks" / "symbolic_composite.yaml"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=120)


def test_catalog_lists_both_sets(capsys) -> None:
    assert main(["catalog"]) == 0
    out = capsys.readouterr().out
    assert "symbolic: 8 skills" in out and "natural:" in out


def test_items_render(capsys) -> None:
    assert main(["items", "--task", str(TASK), "--k", "2", "--show", "3"]) == 0
    assert capsys.readouterr().out.count("--- ") == 3


def test_export_jsonl_and_lm_eval(tmp_path: Path) -> None:
    assert main(["export", "--task", str(TASK), "--format", "jsonl", str(tmp_path / "items.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "items.jsonl").read_text().splitlines()]
    assert rows and {"item_id", "prompt", "answer", "choices", "gold_index", "split"} <= set(rows[0])
    assert main(["export", "--task", str(TASK), "--format", "lm-eval", str(tmp_path / "lm")]) == 0
    configs = {p.name: yaml.safe_load(p.read_text()) for p in (tmp_path / "lm").glob("*.yaml")}
    assert set(configs) == {"symbolic_composite_mc.yaml", "symbolic_composite_gen.yaml"}
    for config in configs.values():
        assert {"task", "dataset_path", "dataset_kwargs", "output_type", "doc_to_text", "doc_to_target",
                "metric_list", "test_split"} <= set(config)
        data = Path(config["dataset_kwargs"]["data_files"]["test"])
        assert data.exists() and len(data.read_text().splitlines()) == len(rows)
    mc = configs["symbolic_composite_mc.yaml"]
    assert mc["output_type"] == "multiple_choice" and mc["doc_to_choice"] == "choices"
    assert configs["symbolic_composite_gen.yaml"]["generation_kwargs"]["until"] == ["\n"]


def test_bad_task_file_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    for text in ("name: x\nkind: composite\nversion: 1\nskill_set: symbolic\nskills: [nope]\n",
                 "name: [unclosed\n", "name: x\nkind: composite\nversion: one\nskill_set: symbolic\n",
                 "name: x\nkind: composite\nversion: 1\nskill_set: symbolic\nskills: []\n",
                 "name: x\nkind: composite\nversion: 1\nskill_set: symbolic\nks: [12]\n"):
        bad.write_text(text)
        result = run_cli("items", "--task", str(bad))
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        assert result.stderr.startswith("error: ")


def test_validate_reports_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nkind: composite\nversion: 1\nskill_set: symbolic\nskills: [rev, nope]\n"
                   "ks: [0]\nmodes: [weird]\nitems: {per_cell: -1}\n")
    result = run_cli("tasks", "validate", str(bad))
    assert result.returncode == 2
    assert result.stdout.count("  - ") == 4


def test_export_leaves_nothing_when_it_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nkind: composite\nversion: 1\nskill_set: symbolic\nks: [9]\n")
    result = run_cli("export", "--task", str(bad), "--format", "lm-eval", str(tmp_path / "out"))
    assert result.returncode == 2 and "k=9 is impossible" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]
