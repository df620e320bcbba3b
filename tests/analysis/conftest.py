"""Shared fixtures: small synthetic families generated under stated hypotheses."""
import pandas as pd
import pytest

from harness.analysis.bootstrap import blas_single_thread

from .synthetic import ag_competence, make_family


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_blas():
    """Tiny fits with threaded BLAS crawl on a shared 2-core machine; every test runs single-threaded."""
    with blas_single_thread():
        yield


def tiny_records(values_by_checkpoint: dict[str, list[float]], *, skills: str = "rev", k: int = 1,
                 mode: str = "single", split: str = "single", metric: str = "exact_match",
                 chance: float = 0.0) -> pd.DataFrame:
    """Hand-written records: one row per (checkpoint, item) with the given values (NaN = failed)."""
    rows = []
    for ck, values in values_by_checkpoint.items():
        for i, v in enumerate(values):
            rows.append({"checkpoint_id": ck, "item_id": f"{skills}-{k}-{mode}-{i}", "skill_set": "symbolic",
                         "skills": skills, "k": k, "mode": mode, "split": split, "n_shots": 0, "metric": metric,
                         "value": v, "error": "parse failure" if v != v else None, "chance": chance,
                         "n_tokens": 5 * k, "parts_correct": 0, "parts_total": k})
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def ag_family():
    """A&G-generated family: 10 checkpoints, k = 1..4, two composite modes, 1% failed records.

    The two largest sizes bring composite failure low enough (theta ~ 0.05) for the tail bound to be
    non-vacuous (beta* theta < 1) in some cells.
    """
    sizes = (2e4, 5e4, 1.2e5, 3e5, 7e5, 1.6e6, 4e6, 1e7, 3e7, 1e8)
    return make_family(ag_competence(lam=2.0), item_kw=dict(n_tuples=12, items_per_tuple=8),
                       checkpoint_kw=dict(sizes=sizes), record_kw=dict(p_fail=0.01))


def pipeline(records: pd.DataFrame, checkpoints: pd.DataFrame, n_boot: int = 50, seed: int = 0) -> tuple:
    """What `analyze` prepares before its steps, the competence table and its bootstrap: (prepared, table, boot)."""
    from harness.analysis.analyze import competence_of, prepare
    from harness.analysis.result import AnalysisConfig

    prepared = prepare(records, checkpoints, seed, n_boot, AnalysisConfig())
    return (prepared, *competence_of(prepared))
