"""The benchmarks' item selections: ``per-cell`` is exactly what ``emergence run --limit N`` scores, and
``spread`` compares at the same item count with the whole suite's mix of k."""
from __future__ import annotations

from benchmarks._common import select_items, selection_facts
from tiny_models import build_checkpoint

from harness.run.config import RunConfig
from harness.run.runner import plan_run
from harness.run.task_files import load_task
from skill_catalog.compose import compose_items

TASK = "natural_composite.yaml"


def test_per_cell_selection_is_exactly_the_items_a_limited_run_composes(tmp_path):
    folder = build_checkpoint(tmp_path / "llama", "llama")
    task = load_task(TASK)
    items = list(compose_items(task.composition))
    for limit in (1, 3):
        plan = plan_run(RunConfig(family=(str(folder),), tasks=(TASK,), limit=limit, out=str(tmp_path / "out")))
        picked = select_items(items, "per-cell", limit)
        assert [i.item_id for i in picked] == [i.item_id for i in plan.items[task.name]]
        facts = selection_facts(task, task.composition, "per-cell", limit, picked)
        assert facts["items_equal_run_limit"] and facts["spec_is_the_tasks"]


def test_spread_selection_has_the_per_cell_count_and_the_whole_suites_mix_of_k():
    task = load_task(TASK)
    items = list(compose_items(task.composition))
    per_cell = select_items(items, "per-cell", 3)
    spread = select_items(items, "spread", 3)
    assert len(spread) == len(per_cell) and len({i.item_id for i in spread}) == len(spread)
    single = sum(i.k == 1 for i in items) / len(items)  # the suite is about half single-skill items
    assert abs(sum(i.k == 1 for i in spread) / len(spread) - single) < 0.05
    assert sum(i.k == 1 for i in per_cell) == 3  # a limited run: N of every cell, one cell of k = 1
    facts = selection_facts(task, task.composition, "spread", 3, spread)
    assert facts["items_equal_run_limit"] is None and facts["per_cell"] is None
    assert facts["items_per_k"] == {k: sum(i.k == k for i in spread) for k in (1, 2, 3, 4)}
    assert len(select_items(items, "spread", 3, n_items=7)) == 7
