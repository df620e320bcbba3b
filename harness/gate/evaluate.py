"""Runs a policy's stages on a run's tables: the items of two checkpoints in, one verdict per stage out."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness.analysis.schema import prepare_records
from harness.gate.decide import (FAILED, PASSED, SKIPPED, CheckResult, decide_cross_entropy, decide_stage,
                                 stage_verdict)
from harness.gate.policy import Policy
from skill_catalog.errors import CatalogError, UserError
from skill_catalog.skill import get_skill


@dataclass(frozen=True)
class StageResult:
    """The verdict of one stage and its checks."""

    name: str
    """Stage name."""
    verdict: str
    """passed, failed, not decidable or not run."""
    checks: tuple[CheckResult, ...]
    """Its checks (empty when not run)."""


@dataclass(frozen=True)
class GateResult:
    """A whole gate decision."""

    policy: str
    """Policy name and version."""
    baseline: str
    """Baseline label."""
    candidate: str
    """Candidate label."""
    metric: str
    """Metric of the score checks."""
    stages: tuple[StageResult, ...]
    """Stages in policy order."""

    @property
    def passed(self) -> bool:
        """Whether every stage passed."""
        return all(s.verdict == PASSED for s in self.stages)

    @property
    def exit_code(self) -> int:
        """0 when every stage passed, 1 otherwise (a failed or undecided check blocks shipping)."""
        return 0 if self.passed else 1


def item_pairs(records: pd.DataFrame, baseline: str, candidate: str, metric: str) -> pd.DataFrame:
    """One row per item the candidate scored: its cell, skill key, chance, and b / c values (b NaN if unscored)."""
    rows = prepare_records(records)
    rows = rows[rows["metric"] == metric]
    keys = ["item_id", "k", "mode", "split", "skill_key", "skill_set", "chance"]
    keys = [c for c in keys if c in rows.columns]
    c = rows[rows["checkpoint_id"] == candidate][keys + ["value"]].rename(columns={"value": "c"})
    b = rows[rows["checkpoint_id"] == baseline][["item_id", "value"]].rename(columns={"value": "b"})
    return c.merge(b, on="item_id", how="left").reset_index(drop=True)


def _families(pairs: pd.DataFrame) -> dict[str, str]:
    out = {}
    for key, skill_set in pairs[pairs["k"] == 1][["skill_key", "skill_set"]].drop_duplicates().itertuples(index=False):
        try:
            out[key] = get_skill(str(skill_set), str(key)).family
        except CatalogError:
            out[key] = key
    return out


def evaluate(policy: Policy, records: pd.DataFrame, checkpoints: pd.DataFrame, baseline: str, candidate: str,
             *, all_stages: bool = False) -> GateResult:
    """Runs the policy's stages in order on the records of checkpoint ids `baseline` and `candidate`.

    Raises:
        UserError: when the candidate has no record of the policy's metric.
    """
    pairs = item_pairs(records, baseline, candidate, policy.metric)
    if pairs.empty:
        raise UserError(f"the candidate has no {policy.metric!r} records in this run; score it with the "
                        f"policy's tasks ({', '.join(policy.tasks)})")
    families = _families(pairs) if any(s.by == ("family",) for s in policy.stages) else {}
    ck = checkpoints.set_index(checkpoints["checkpoint_id"].astype(str))
    results, blocked = [], False
    for stage in policy.stages:
        if blocked and not all_stages:
            results.append(StageResult(stage.name, SKIPPED, ()))
            continue
        checks = decide_cross_entropy(stage, ck.loc[baseline], ck.loc[candidate]) if stage.kind == "cross_entropy" \
            else decide_stage(stage, pairs, policy, families)
        verdict = stage_verdict(checks)
        blocked = blocked or verdict != PASSED
        results.append(StageResult(stage.name, verdict, tuple(checks)))
    label = dict(zip(ck.index, ck["label"].astype(str))) if "label" in ck else {}
    return GateResult(f"{policy.name} v{policy.version}", label.get(baseline, baseline),
                      label.get(candidate, candidate),
                      policy.metric, tuple(results))


def regressed(result: GateResult) -> list[str]:
    """The checks that failed, named (e.g. ``basic: noninferiority skill=rev``)."""
    return [f"{s.name}: {c.check}" for s in result.stages for c in s.checks if c.verdict == FAILED]
