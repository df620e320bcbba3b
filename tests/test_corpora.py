"""Local corpora for cross-entropy (text file, folder, saved `datasets` dataset) and the datasets export."""
from __future__ import annotations

import math
from pathlib import Path

import datasets
import pytest

from harness.run.cross_entropy import corpus_texts, measure_cross_entropy
from harness.run.export import export_task
from harness.model.hf_model import HFModel, ModelSettings
from harness.run.task_files import CrossEntropyTask, load_task
from skill_catalog.errors import UserError

TASK = Path(__file__).resolve().parent.parent / "tasks" / "symbolic_composite.yaml"


def test_corpus_sources_read_the_same_documents(tmp_path: Path) -> None:
    docs = ["rev abcd=dcba\n", "sft abch=bcda\nmir aaaa=hhhh\n"]
    (tmp_path / "one.txt").write_text(docs[0])
    folder = tmp_path / "folder"
    folder.mkdir()
    for i, d in enumerate(docs):
        (folder / f"{i}.txt").write_text(d)
    datasets.Dataset.from_dict({"text": docs}).save_to_disk(str(tmp_path / "ds"))
    assert corpus_texts(str(tmp_path / "one.txt")) == docs[:1]
    assert corpus_texts(str(folder)) == docs
    assert corpus_texts(str(tmp_path / "ds")) == docs
    with pytest.raises(UserError, match="does not exist"):
        corpus_texts(str(tmp_path / "nothing"))


def test_cross_entropy_of_a_local_corpus_has_no_floor(tiny_family: Path, tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("rev abcd=dcba\nsft abch=bcda\n")
    model = HFModel.from_checkpoint(tiny_family / "n20k" / "step00100", ModelSettings(device="cpu"))
    row = measure_cross_entropy(model, CrossEntropyTask("c", 1, str(tmp_path / "c.txt"), "symbolic", 0, 1))
    assert row["n_tokens"] == 24 and row["n_bytes"] == 28 and row["nats_sum"] > 0
    assert math.isnan(row["entropy_floor"]) and row["error"] is None


def test_datasets_export_round_trips(tmp_path: Path) -> None:
    task = load_task(TASK)
    out = export_task(task, "datasets", tmp_path / "ds")
    data = datasets.load_from_disk(str(out))
    assert len(data) > 100 and {"item_id", "prompt", "answer", "choices", "split"} <= set(data.column_names)
    assert data[0]["choices"][data[0]["gold_index"]] == data[0]["answer"]


def test_a_size_folder_loads_its_own_final_weights(tiny_family: Path) -> None:
    from harness.model.hf_load import single_checkpoint

    ckpt = single_checkpoint(tiny_family / "n20k", allow_pickle=False)
    assert ckpt.path == (tiny_family / "n20k").resolve() and ckpt.step == 200
    with pytest.raises(UserError, match="holds 0 checkpoints|no weights"):
        single_checkpoint(tiny_family, allow_pickle=False)
