"""Seeded, fast version of the paired comparison's calibration (benchmarks/calibration/paired.py)."""
from benchmarks.calibration.paired import rows


def test_paired_tests_hold_size_family_error_and_coverage_under_tuple_clustering():
    table = {(r.procedure, r.quantity, r.scenario.split(",")[1].strip() if r.procedure == "paired_sign_flip" else
              r.scenario[:8]): r for r in rows(n_reps=25, seed=3, n_boot=100)}
    sizes = [r for r in table.values() if r.quantity == "size"]
    coverages = [r for r in table.values() if r.quantity == "coverage"]
    assert len(sizes) == 4 and len(coverages) == 2
    # wide bounds (25 replicates): an item-level McNemar gives ~0.3 in the k = 1 cell and covers ~0.7 there
    assert all(r.estimate <= 0.12 for r in sizes), [(r.procedure, r.scenario, r.estimate) for r in sizes]
    assert all(r.estimate >= 0.85 for r in coverages), [(r.scenario, r.estimate) for r in coverages]
    powers = [r for r in table.values() if r.quantity == "power"]
    assert all(r.estimate >= 0.1 for r in powers)
