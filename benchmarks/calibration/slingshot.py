"""Calibration of the slingshot test and of the in-context gain (harness/analysis/slingshot.py, shots.py).

Simulated held-out items (numpy only, no analyzer code in the truth): per k in (2, 4), `n_tuples`
skill tuples of 10 skills, `n_items` items over them (4 each by default); item i has a log-hazard effect
eta_i = tuple effect (sd 0.4) + item effect (sd 0.3), kept across checkpoints and shot counts. At
checkpoint m (excess loss delta_m) with s examples in the prompt, competence is q = exp(-lam k^a delta^b e^eta_i e^(-gamma s)) and
the item succeeds with probability q (chance 0). With a = b the population curves obey
q_2k(delta) = q_k(2 delta) exactly (a true slingshot); a > b makes 2k lag. The true gain of an example is
E q(s + 1) - E q(s) over the effect distribution (Gauss-Hermite quadrature); the true slope is the
least-squares slope of the true gains on the loss. With a `Design` other than `V1` (``--design v2``) the
slingshot rows use that suite's skills, items and tuples per cell, checkpoints and k (v2: k -> 2k for
k = 2, 3, 4, 2k up to 8).
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from benchmarks.calibration.rows import CalibrationRow, coverage_row, power_row, size_row
from benchmarks.calibration.simulate import V1, Design
from harness.analysis.bootstrap import assign_clusters, cluster_design, rng_for
from harness.analysis.schema import prepare_records
from harness.analysis.shots import shot_sums, shots_table
from harness.analysis.slingshot import slingshot_test

SKILLS = tuple("abcdefghij")
FLOOR = 0.84
DELTAS = tuple(np.geomspace(0.03, 0.8, 12))
TUPLE_SD, ITEM_SD, LAM, B = 0.4, 0.3, 2.0, 1.5


def simulate(seed: int, *, a: float = B, gamma: float = 0.0, shots: tuple[int, ...] = (0,), n_tuples: int = 12,
             n_items: int = 48, ks: tuple[int, ...] = (2, 4), skills: tuple[str, ...] = SKILLS,
             deltas: tuple[float, ...] = DELTAS) -> tuple[pd.DataFrame, pd.Series]:
    """Records of one simulated family (held-out conjunction items only) and its excess loss per checkpoint.

    Each k has `n_items` items over `n_tuples` tuples of `skills` (as even as they divide), scored at
    checkpoints of excess loss `deltas`.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for k in ks:
        combos = list(itertools.combinations(skills, k))
        for j, t in enumerate(rng.choice(len(combos), n_tuples, replace=False)):
            effect = rng.normal(0.0, TUPLE_SD)
            per_tuple = n_items // n_tuples + (j < n_items % n_tuples)
            rows += [(combos[t], k, effect + rng.normal(0.0, ITEM_SD)) for _ in range(per_tuple)]
    tuples, k, eta = zip(*rows)
    k, eta = np.array(k, float), np.array(eta)
    delta = np.asarray(deltas)
    frames = []
    for s in shots:
        q = np.exp(-LAM * k[None] ** a * delta[:, None] ** B * np.exp(eta)[None] * np.exp(-gamma * s))
        hit = (rng.random(q.shape) < q).astype(float)
        frames.append(pd.DataFrame({
            "checkpoint_id": np.repeat([f"c{m:02d}" for m in range(len(delta))], len(rows)),
            "item_id": np.tile([f"i{i:04d}-s{s}" for i in range(len(rows))], len(delta)),
            "skills": [tuple(x) for x in tuples] * len(delta), "k": np.tile(k.astype(int), len(delta)),
            "mode": "conjunction", "split": "heldout", "n_shots": s, "metric": "exact_match",
            "value": hit.reshape(-1), "chance": 0.0}))
    excess = pd.Series(delta, index=[f"c{m:02d}" for m in range(len(delta))])
    return pd.concat(frames, ignore_index=True), excess


def _design(records: pd.DataFrame, seed: int, n_boot: int):
    recs = prepare_records(records)
    clusters, _ = assign_clusters(recs)
    weights = cluster_design(clusters, n_boot, rng_for(seed, "items")).weights
    sums = shot_sums(recs, clusters).merge(clusters[["cluster", "skill_key"]], on="cluster")
    return sums, weights


def design_args(design: Design) -> dict:
    """`simulate`'s sizes for a suite design (`V1`: this module's own defaults)."""
    if design == V1:
        return {}
    return dict(skills=design.skills, deltas=design.deltas, n_tuples=design.tuples_per_cell, n_items=design.per_cell,
                ks=tuple(k for k in design.ks if k > 1))


def slingshot_verdicts(seed: int, a: float, n_boot: int = 200, design: Design = V1) -> dict[int, str]:
    """The slingshot verdict per k (k against 2k) on one simulated family."""
    records, excess = simulate(seed, a=a, **design_args(design))
    sums, weights = _design(records, seed, n_boot)
    _, summary, _ = slingshot_test(sums, weights, excess)
    return {int(k): str(v) for k, v in zip(summary["k"], summary["verdict"])}


def slingshot_verdict(seed: int, a: float, n_boot: int = 200) -> str:
    """The slingshot verdict on one simulated family (k = 2 against 2k = 4)."""
    return slingshot_verdicts(seed, a, n_boot)[2]


def true_gains(gamma: float, k: int, s: int, deltas: tuple[float, ...] = DELTAS) -> np.ndarray:
    """E q(s + 1) - E q(s) per checkpoint (of excess loss `deltas`) for the simulated effect distribution."""
    x, w = np.polynomial.hermite_e.hermegauss(60)
    eta = np.sqrt(TUPLE_SD ** 2 + ITEM_SD ** 2) * x
    w = w / w.sum()
    delta = np.asarray(deltas)[:, None]
    mean_q = lambda shots: (np.exp(-LAM * k ** B * delta ** B * np.exp(eta) * np.exp(-gamma * shots)) * w).sum(1)  # noqa: E731
    return mean_q(s + 1) - mean_q(s)


def shots_outcome(seed: int, gamma: float, n_boot: int = 200, **sizes) -> pd.DataFrame:
    """Gains and trend rows of one simulated family asked with 0, 1 and 2 shots (`sizes`: `simulate`'s)."""
    records, excess = simulate(seed, gamma=gamma, shots=(0, 1, 2), **sizes)
    sums, weights = _design(records, seed, n_boot)
    gains, trend, _ = shots_table(sums, weights, FLOOR + excess)
    return gains, trend


def slingshot_rows(n_reps: int, seed: int, design: Design = V1) -> list[CalibrationRow]:
    """Size of the verdict (and coverage of its interval, truth 0) under a true slingshot; power under a lag."""
    if design != V1:
        return _design_rows(n_reps, seed, design)
    out = []
    null = [slingshot_verdict(seed + r, a=B) for r in range(n_reps)]
    failed = sum(v.startswith("not testable") for v in null)
    wrong = sum(v in ("2k lags", "2k leads") for v in null)
    out.append(size_row("slingshot_verdict", "true slingshot (a = b = 1.5), 12 held-out tuples per k, 12 checkpoints",
                        wrong, n_reps - failed, failed))
    out.append(coverage_row("slingshot_interval", "true slingshot: mean difference 0", n_reps - failed - wrong,
                            n_reps - failed, failed))
    for a, minimum, words in ((B + 1.0, 0.8, "2k lags (a = 2.5, b = 1.5: at delta, 2k-tuples fail like k-tuples at "
                                                   "2^(5/3) delta instead of 2 delta)"),
                              (B + 0.5, 0.3, "2k lags a little (a = 2.0, b = 1.5: like k-tuples at 2^(4/3) delta)")):
        lag = [slingshot_verdict(seed + 10_000 + r, a=a) for r in range(n_reps)]
        failed = sum(v.startswith("not testable") for v in lag)
        out.append(power_row("slingshot_verdict", words, sum(v == "2k lags" for v in lag), n_reps - failed, minimum,
                             failed))
    return out


def _design_rows(n_reps: int, seed: int, design: Design) -> list[CalibrationRow]:
    """Per k -> 2k of the design: size and interval coverage under a true slingshot, power under a clear lag."""
    null = [slingshot_verdicts(seed + 40_000 + r, a=B, design=design) for r in range(n_reps)]
    lag = [slingshot_verdicts(seed + 50_000 + r, a=B + 1.0, design=design) for r in range(n_reps)]
    out = []
    for k in sorted(null[0]):
        verdicts = [v[k] for v in null]
        failed = sum(v.startswith("not testable") for v in verdicts)
        wrong = sum(v in ("2k lags", "2k leads") for v in verdicts)
        scen = f"true slingshot (a = b = 1.5), k = {k} -> {2 * k}, held-out tuples, {design.words}"
        out.append(size_row("slingshot_verdict", scen, wrong, n_reps - failed, failed))
        out.append(coverage_row("slingshot_interval", scen.replace("slingshot", "slingshot: mean difference 0", 1),
                                n_reps - failed - wrong, n_reps - failed, failed))
        verdicts = [v[k] for v in lag]
        failed = sum(v.startswith("not testable") for v in verdicts)
        out.append(power_row("slingshot_verdict", f"2k lags (a = 2.5, b = 1.5), k = {k} -> {2 * k}, held-out tuples, "
                             f"{design.words}", sum(v == "2k lags" for v in verdicts), n_reps - failed, 0.8, failed))
    return out


def shots_rows(n_reps: int, seed: int) -> list[CalibrationRow]:
    """Coverage of the per-checkpoint gain and of the slope under a real gain; size of the slope with no gain."""
    covered = total = slope_cov = slope_n = 0
    truth = {(k, s): true_gains(0.7, k, s) for k in (2, 4) for s in (0, 1)}
    loss = FLOOR + np.asarray(DELTAS)
    slope_truth = {key: float(np.polyfit(loss, g, 1)[0]) for key, g in truth.items()}
    for r in range(n_reps):
        gains, trend = shots_outcome(seed + 20_000 + r, 0.7)
        for (k, step), rows in gains.groupby(["k", "step"]):
            g = truth[(int(k), int(step[0]))][[int(c[1:]) for c in rows["checkpoint_id"]]]
            ok = rows["gain_lo"].notna().to_numpy()
            covered += int(np.sum((rows["gain_lo"].to_numpy()[ok] <= g[ok]) & (g[ok] <= rows["gain_hi"].to_numpy()[ok])))
            total += int(ok.sum())
        for t in trend.to_dict("records"):
            if np.isfinite(t["slope_lo"]):
                slope_n += 1
                slope_cov += int(t["slope_lo"] <= slope_truth[(int(t["k"]), int(t["step"][0]))] <= t["slope_hi"])
    rejections = n_null = 0
    for r in range(n_reps):
        _, trend = shots_outcome(seed + 30_000 + r, 0.0)
        ok = trend[trend["slope_lo"].notna()]
        n_null += len(ok)
        rejections += int(((ok["slope_lo"] > 0) | (ok["slope_hi"] < 0)).sum())
    return [coverage_row("shots_gain_interval", "gamma = 0.7 per example, per checkpoint x k x step (pooled)",
                         covered, total),
            coverage_row("shots_slope_interval", "gamma = 0.7: slope of the gain on loss, per k x step", slope_cov,
                         slope_n),
            size_row("shots_slope_excludes_0", "no gain (gamma = 0), per k x step", rejections, n_null)]


V2_SHOTS_KS = (2, 4, 8)
"""k of the v2 shots suite (tasks/symbolic_v2_shots.yaml: 10 held-out queries per k, asked with 0, 1, 2 exemplars)."""


def shots_design_rows(n_reps: int, seed: int, design: Design = V1) -> list[CalibrationRow]:
    """At a suite design: size of "the mean gain per example excludes 0" with no gain, its power and the
    interval's coverage under a gain (gamma = 0.7 per example), per k x step (the README's in-context verdict)."""
    if design == V1:
        return []
    sizes = dict(skills=design.skills, deltas=design.deltas, n_tuples=10, n_items=10, ks=V2_SHOTS_KS)
    words = (f"{design.name} shots suite: {len(design.skills)} skills, 10 held-out queries / 10 tuples per k = 2, 4, 8, "
             f"0-2 exemplars, {len(design.deltas)} ckpts ({design.name} losses)")
    truth = {(k, st): float(np.mean(true_gains(0.7, k, st, design.deltas))) for k in V2_SHOTS_KS for st in (0, 1)}
    null_rej = null_n = power_rej = cov = n = 0
    for r in range(n_reps):
        _, trend = shots_outcome(seed + 60_000 + r, 0.0, **sizes)
        ok = trend[trend["mean_gain_lo"].notna()]
        null_n += len(ok)
        null_rej += int(((ok["mean_gain_lo"] > 0) | (ok["mean_gain_hi"] < 0)).sum())
        _, trend = shots_outcome(seed + 70_000 + r, 0.7, **sizes)
        for t in trend.to_dict("records"):
            if np.isfinite(t["mean_gain_lo"]):
                n += 1
                power_rej += int(t["mean_gain_lo"] > 0 or t["mean_gain_hi"] < 0)
                cov += int(t["mean_gain_lo"] <= truth[(int(t["k"]), int(t["step"][0]))] <= t["mean_gain_hi"])
    return [size_row("shots mean gain interval excludes 0", f"no gain (gamma = 0), per k x step, {words}",
                     null_rej, null_n),
            power_row("shots mean gain interval excludes 0", f"gamma = 0.7 per example, per k x step, {words}",
                      power_rej, n, 0.8),
            coverage_row("shots mean gain interval", f"gamma = 0.7 per example, per k x step, {words}", cov, n)]


ROW_FUNCTIONS = (slingshot_rows, shots_rows)
DESIGN_ROW_FUNCTIONS = (slingshot_rows, shots_design_rows)
"""Those that take a ``design`` (``bench_calibration.py --design``)."""


def rows(n_reps: int, seed: int) -> list[CalibrationRow]:
    """Every row of this module."""
    return [row for fn in ROW_FUNCTIONS for row in fn(n_reps, seed)]
