"""The main job: `emergence run` scores, analyzes and reports; with no arguments it uses the built-in family."""
from __future__ import annotations

import json
from pathlib import Path

import math

import pandas as pd

from harness.analysis.skill_loss import per_skill_loss
from harness.cli.main import main
from harness.run.cross_entropy import DOC_CHARS, catalog_text
from harness.run.config import RunConfig
from harness.run.runner import plan_run
from harness.run.task_files import load_task
from harness.zoo.family import SHIPPED_DIR

TASKS = Path(__file__).resolve().parent.parent / "tasks"


def test_main_job_end_to_end_on_tiny_family(tiny_family: Path, tmp_path: Path, capsys) -> None:
    code = main(["run", "--family", str(tiny_family), "--limit", "2", "--out", str(tmp_path / "results")])
    out = capsys.readouterr().out
    assert code == 0, out
    run_dir = Path(out.strip().splitlines()[-1].split("run directory: ")[1])
    assert (run_dir / "report.html").stat().st_size > 10_000
    summary = json.loads((run_dir / "analysis.json").read_text())
    assert summary and "analyses" in json.dumps(summary)
    assert "report: " in out and "n20k@200" in out  # the summary table names every checkpoint
    skill_loss = pd.read_parquet(run_dir / "analysis" / "per_skill_loss.parquet")
    assert len(skill_loss) == 6 * 2 and (skill_loss["nats_per_token"] > 0).all()  # --limit 2: two skills at k=1


def test_no_arguments_means_the_shipped_family_and_default_suites() -> None:
    plan = plan_run(RunConfig(limit=1))
    manifest_rows = (SHIPPED_DIR / "default" / "family.yaml").read_text().count("- label:")
    assert len(plan.members) == manifest_rows >= 30
    assert {t.name for t in plan.tasks} == {"symbolic-v2-composite", "symbolic-v2-shots", "symbolic-v2-heldout-text"}
    assert len({m.checkpoint.checkpoint_id for m in plan.members}) == len(plan.members)


def test_catalog_text_is_whole_pieces_in_short_documents() -> None:
    task = load_task(TASKS / "symbolic_heldout_text.yaml")
    docs, entropy = catalog_text(task)
    assert all(len(d) <= DOC_CHARS and d.endswith("\n") and not d.startswith("\n") for d in docs)
    assert sum(d.count("\n") for d in docs) == task.pieces
    assert entropy > 0


def test_per_skill_loss_counts_failures_and_never_sums_them_as_zero() -> None:
    rows = [dict(checkpoint_id="c", skills="rev", item_id=f"i{i}", k=1, metric="gold_logprob", value=v,
                 logprob_sum=v, n_tokens=5) for i, v in enumerate([-1.0, -3.0, math.nan])]
    rows.append(dict(checkpoint_id="c", skills="rev+sft", item_id="j", k=2, metric="gold_logprob", value=-9.0,
                     logprob_sum=-9.0, n_tokens=9))
    table = per_skill_loss(pd.DataFrame(rows))
    assert len(table) == 1
    row = table.iloc[0]
    assert row["n_items"] == 2 and row["n_failed"] == 1 and row["nats_per_token"] == 4.0 / 10
