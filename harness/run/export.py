"""Exports a composite task's items: JSONL, a saved `datasets` dataset, or an lm-evaluation-harness task.

The lm-eval export writes the items as JSONL plus two task YAMLs (multiple choice and greedy
generation) that lm-eval's HF backend runs unchanged, so users can cross-check our numbers.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import yaml

from harness.run.task_files import CompositeTask
from skill_catalog.compose import Item, compose_items, item_to_dict
from skill_catalog.errors import UserError

FORMATS = ("jsonl", "datasets", "lm-eval")


def _jsonl(items: list[Item], path: Path) -> None:
    with path.open("w") as f:
        for item in items:
            f.write(json.dumps(item_to_dict(item), ensure_ascii=False) + "\n")


def lm_eval_configs(task: CompositeTask, data_file: Path) -> dict[str, dict]:
    """lm-eval task configs (multiple choice and generation) reading `data_file`."""
    base = task.name.replace("-", "_")
    common = {
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file.resolve())}},
        "test_split": "test",
        "doc_to_text": "prompt",
        "target_delimiter": "",  # our continuations already carry their leading space (if any)
        "metadata": {"version": task.version, "exported_by": "emergence-harness"},
    }
    mc = {"task": f"{base}_mc", "output_type": "multiple_choice", "doc_to_choice": "choices",
          "doc_to_target": "gold_index", **common,
          "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}
    gen = {"task": f"{base}_gen", "output_type": "generate_until", "doc_to_target": "answer", **common,
           "generation_kwargs": {"until": ["\n"], "do_sample": False, "max_gen_toks": task.max_new_tokens},
           "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                            "ignore_case": False, "ignore_punctuation": False}]}
    return {mc["task"]: mc, gen["task"]: gen}


def _lm_eval(task: CompositeTask, items: list[Item], folder: Path, final: Path) -> None:
    data = folder / "items.jsonl"
    _jsonl(items, data)
    for name, config in lm_eval_configs(task, final / "items.jsonl").items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))


def _datasets(items: list[Item], folder: Path) -> None:
    try:
        import datasets
    except ImportError:
        raise UserError("the datasets export needs the `datasets` package; run `pip install -e .[datasets]`") from None
    rows = [item_to_dict(i) for i in items]
    datasets.Dataset.from_list(rows).save_to_disk(str(folder))


def export_task(task: CompositeTask, fmt: str, out: Path) -> Path:
    """Writes the task's items in `fmt` to `out` (a file for jsonl, a folder otherwise), atomically."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    items = list(compose_items(task.composition))
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        if fmt == "jsonl":
            _jsonl(items, tmp / "items.jsonl")
            os.replace(tmp / "items.jsonl", out)
            return out
        target = tmp / "data"
        target.mkdir()
        _datasets(items, target) if fmt == "datasets" else _lm_eval(task, items, target, out)
        if out.exists():
            raise UserError(f"{out} already exists; choose a new output folder")
        os.replace(target, out)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
