"""Why a summary value is missing: said by the object that holds it, keyed by field name (`result.summary_entry`)."""
import json

import numpy as np
import pytest

from harness.analysis import analyze
from harness.analysis import pipeline_steps as steps
from harness.analysis.analyze import STEP_NAMES
from harness.analysis.result import MISSING, missing_values, summary_entry, why_missing

NOT_ESTIMABLE = "not estimable from these data"


def _objects(node):
    """Every dict in a summary (the entry, its records, nested mappings)."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value)


def test_a_missing_value_is_explained_by_the_object_that_holds_it_keyed_by_field_name():
    entry = summary_entry({"status": "ok", "reason": None, "c": np.nan, "n": 3,
                           "fits": [{"E": np.nan, "alpha": 0.3, "reason": "not identified"}, {"E": 1.0, "alpha": 0.2}]})
    assert entry["c"] is None and why_missing(entry) == {"c": NOT_ESTIMABLE}
    assert why_missing(entry["fits"][0]) == {"E": "not identified"}
    assert MISSING not in entry["fits"][1]  # nothing missing, nothing said
    assert json.loads(json.dumps(entry)) == entry


@pytest.mark.parametrize("given_on_object, given_on_entry, row_reason, expected", [
    ({"E_lo": "too few replicates"}, {"E_lo": "entry says"}, "row says", "too few replicates"),
    ({}, {"E_lo": "entry says"}, "row says", "row says"),
    ({}, {"E_lo": "entry says"}, None, "entry says"),
    ({}, {}, None, NOT_ESTIMABLE),
])
def test_reason_comes_from_the_object_then_its_row_reason_then_the_step_then_the_default(
        given_on_object, given_on_entry, row_reason, expected):
    fit = {"E_lo": np.nan, "reason": row_reason, MISSING: given_on_object}
    entry = summary_entry({"status": "ok", "reason": None, "fits": [fit], MISSING: given_on_entry})
    assert why_missing(entry["fits"][0]) == {"E_lo": expected}
    assert MISSING not in entry  # the entry's own fields are all present: its reasons were for its records


def test_a_skipped_step_gives_its_reason_to_every_missing_value_and_inf_is_not_called_nan():
    skipped = summary_entry({"status": "skipped", "reason": "needs k > 1", "x": np.nan, "rows": [{"y": np.nan}],
                             MISSING: {"x": "ignored"}}, "needs k > 1")
    assert why_missing(skipped) == {"x": "needs k > 1"} and why_missing(skipped["rows"][0]) == {"y": "needs k > 1"}
    assert why_missing(summary_entry({"status": "ok", "reason": None, "z": np.inf})) == {"z": "infinite"}


def test_reasons_given_for_values_that_are_present_are_not_reported():
    entry = summary_entry({"status": "ok", "reason": None, "b_lo": 0.1, "b": np.nan,
                           MISSING: {"b_lo": "interval reason", "b": "law not fitted"}})
    assert why_missing(entry) == {"b": "law not fitted"}


def test_missing_values_lists_every_missing_number_with_its_path_in_field_order():
    entry = summary_entry({"status": "ok", "reason": None, "a": np.nan, "fits": [{"E": 1.0}, {"E": np.nan}],
                           "z": np.nan, "xs": [1.0, np.nan]})
    assert missing_values(entry) == [("a", NOT_ESTIMABLE), ("fits[1].E", NOT_ESTIMABLE), ("z", NOT_ESTIMABLE),
                                     ("xs[1]", NOT_ESTIMABLE)]


def test_every_reason_in_an_analysis_is_keyed_by_a_field_of_its_own_object_that_is_missing(ag_family):
    records, ck = ag_family
    few = ck.iloc[:4]  # four checkpoints: scaling intervals and several fits cannot be estimated
    summary = analyze(records[records["checkpoint_id"].isin(few["checkpoint_id"])], few, n_boot=4).summary
    said = 0
    for obj in _objects(summary["analyses"]):
        for field, reason in why_missing(obj).items():
            assert field in obj and obj[field] is None and reason, (field, obj)
            said += 1
    assert said > 0
    fits = summary["analyses"]["scaling"]["fits"]
    assert any(why_missing(f).get("E_lo") == steps._CI_REASON for f in fits), fits


def test_steps_that_need_competence_are_skipped_with_the_reason_when_it_fails(ag_family, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("planted")

    monkeypatch.setattr(steps, "competence_table", broken)
    records, ck = ag_family
    analyses = analyze(records, ck, n_boot=3).summary["analyses"]
    assert list(analyses) == list(STEP_NAMES)  # every step has its entry, in run order
    assert analyses["competence"] == {"status": "error", "reason": "unexpected RuntimeError: planted"}
    for name in ("competence_fits", "emergence", "ag_failure", "ag_tail_bound", "collapse", "ag_cor13",
                 "composable_k"):
        assert analyses[name] == {"status": "skipped", "reason": "needs competence, which did not run"}, name
    assert all(analyses[name]["status"] == "ok" for name in ("scaling", "excess_loss", "product_rule",
                                                             "seen_heldout", "paired"))
