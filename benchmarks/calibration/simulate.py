"""Item-level simulated runs with the dependence of a real one, for the calibration study.

Independent of the analyzer's code (numpy only): it writes records and checkpoints tables in the
runner's schema. Every item keeps one latent effect across all checkpoints (the same items are scored
at every checkpoint), items share a random effect with the other items of their skill tuple (tuples
are the analyzer's bootstrap clusters), and skills have their own difficulty.

Chance-corrected competence of item i at checkpoint m (excess loss delta_m):
    ``"weibull"``: q = exp(-lam k^a delta^b e^eta_i), eta_i = mean skill effect + tuple effect + item effect;
        success p = g + (1 - g) q. a = b is Arora-Goyal's collapse, a = 1 independent skills.
    ``"power"``: failure 1 - q = min(1, lam k^a delta^b e^eta_i), A&G's failure law per item: while no item
        is clipped at 1 the mean single-skill failure is exactly c delta^b with c = lam E[e^eta] (b known).
    ``"threshold"``: q = 1 - exp(-lam e^eta_i max(0, delta* - k^a delta)), a true breakpoint: every item is
        exactly at chance while k^a delta >= delta* (`breakpoint_delta`) and rises below it, so the mean
        competence of a (mode, k) cell leaves chance at loss FLOOR + delta* / k^a (`true_breakpoint_loss`).
    ``"parts"``: each of the k parts succeeds independently, part j with p_j = g + (1 - g) q_j,
        q_j = exp(-lam delta^b e^eta_ij); the composite succeeds when every part does (exact
        independence), and its recorded chance is g^k (guessing every part).
The continuous metric (``gold_logprob``) is y = f(L) e^(eta_i / 2) + noise, with f either a smooth
exponential in loss or a hinge (flat above a loss threshold, linear below it), for the mirage check.

Sizes default to the built-in suite (tasks/symbolic_composite.yaml): 8 skills x 25 single items,
40 items per (k, mode, split) cell, so about 1000 items per checkpoint with k = 2..6. A `Design` swaps
them for another suite's (`V2`: reference family v2's suite and checkpoints).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

SKILLS: tuple[str, ...] = ("rev", "rot", "swp", "srt", "pmx", "sft", "mir", "sub")
"""Skill names (those of the built-in symbolic catalog)."""
FLOOR = 0.84
"""Irreducible loss (nats/token) of the simulated family; loss = FLOOR + excess loss."""


@dataclass(frozen=True)
class Scenario:
    """One simulated truth and design."""

    name: str = "ag"
    """Short name used in the calibration table."""
    generator: str = "weibull"
    """``"weibull"`` (collapse model with random effects), ``"power"`` (power-law failure per item),
    ``"threshold"`` (a true breakpoint) or ``"parts"`` (exact independence of parts)."""
    a: float = 1.5
    """Exponent of k (weibull)."""
    b: float = 1.5
    """Exponent of the excess loss."""
    lam: float = 2.0
    """Scale of the failure hazard."""
    breakpoint_delta: float = 0.5
    """delta* of the ``"threshold"`` generator: single-skill items leave chance below this excess loss."""
    chance: float = 0.0
    """Chance level g of a single item (a part, for ``parts``)."""
    skills: tuple[str, ...] = SKILLS
    """Skill names of the catalog (tuples are drawn from them)."""
    ks: tuple[int, ...] = (1, 2, 3, 4)
    """Tested k whose items follow the generator (k = 1 are single-skill items)."""
    trained_ks: tuple[int, ...] | None = None
    """k the analysis treats as trained (its ``trained_ks``); None: `ks`. v2 tests k = 5..8 beyond the trained
    k = 1..4, and there they are not all wrong, so they belong in `ks`, not `ood_ks`."""
    ood_ks: tuple[int, ...] = ()
    """Out-of-distribution k: their items are always wrong (as k = 5, 6 on the built-in family)."""
    modes: tuple[str, ...] = ("conjunction",)
    """Composite modes."""
    deltas: tuple[float, ...] = tuple(np.geomspace(0.03, 0.8, 12).round(5))
    """Excess loss of each checkpoint (one checkpoint each)."""
    skill_sd: float = 0.2
    """SD of the skill effects (log hazard)."""
    tuple_sd: float = 0.4
    """SD of the tuple (cluster) effects."""
    item_sd: float = 0.3
    """SD of the item effects (persistent across checkpoints)."""
    single_per_skill: int = 25
    """k = 1 items per skill."""
    per_cell: int = 40
    """Items per (k, mode, split) cell."""
    tuples_per_cell: int = 10
    """Distinct skill tuples per (k, split): the clusters (the built-in suite has 14-33)."""
    single_tuple_effect: bool = False
    """Give each skill's own k = 1 items a cluster effect of sd `tuple_sd` too (with skill_sd = 0 every k
    then has the same effect distribution, and the mean curves collapse exactly under a = b)."""
    heldout_shift: float = 0.0
    """Log-hazard added to the effect of every held-out composite item: held-out tuples fail at e^shift times the
    hazard of seen ones (a true seen/held-out gap); 0: none (both splits' tuples drawn from one pool)."""
    continuous: str = "smooth"
    """Truth of the continuous metric: ``"smooth"`` exponential or ``"hinge"``."""
    hinge_loss: float = 1.55
    """Loss below which the hinge continuous metric starts to rise (where exact match at k = 2 jumps)."""
    metrics: tuple[str, ...] = ("exact_match",)
    """Metrics written (``exact_match`` and optionally ``gold_logprob``)."""
    extra: dict = field(default_factory=dict, compare=False)
    """Free-form notes carried into the truth."""

    def with_(self, **changes) -> "Scenario":
        """A copy with some fields changed."""
        return replace(self, **changes)


V2_DELTAS: tuple[float, ...] = (
    0.021, 0.025, 0.083, 0.240, 0.365, 0.416, 0.419, 0.448, 0.453, 0.509, 0.556, 0.584, 0.632, 0.694, 0.707,
    0.737, 0.750, 0.754, 0.789, 0.791, 0.803, 0.822, 0.836, 0.840, 0.842, 0.854, 0.857, 0.875, 0.888, 0.905,
    0.921, 0.936, 0.939, 0.941, 0.949, 1.466, 1.476, 1.526, 1.531, 1.557, 1.569, 1.585)
"""Excess loss of the 42 checkpoints of reference family v2, seed 0 (7 sizes x 6 steps,
benchmarks/results/v2_seed0/checkpoints.parquet): three below 0.1, most between 0.4 and 0.95, seven above 1.4."""


@dataclass(frozen=True)
class Design:
    """A suite and family design that replaces the `Scenario` defaults (None: keep the scenario's value)."""

    name: str
    """Short name (``v1``, ``v2``), the value of ``bench_calibration.py --design``."""
    words: str
    """The design in words, for the calibration table's scenario column."""
    skills: tuple[str, ...] | None = None
    """Skill names of the catalog."""
    single_per_skill: int | None = None
    """k = 1 items per skill."""
    per_cell: int | None = None
    """Items per (k, mode, split) cell."""
    tuples_per_cell: int | None = None
    """Distinct skill tuples per (k, split)."""
    ks: tuple[int, ...] | None = None
    """Tested k."""
    trained_ks: tuple[int, ...] | None = None
    """k the analysis treats as trained."""
    deltas: tuple[float, ...] | None = None
    """Excess loss of each checkpoint."""

    def apply(self, sc: Scenario) -> Scenario:
        """`sc` with this design's sizes, k and checkpoints."""
        names = ("skills", "single_per_skill", "per_cell", "tuples_per_cell", "ks", "trained_ks", "deltas")
        return sc.with_(**{n: getattr(self, n) for n in names if getattr(self, n) is not None})


V1 = Design("v1", "12 ckpts, k 1-4")
"""The first built-in suite and the scenarios as written (every field kept)."""
V2 = Design("v2", "v2 suite: 16 skills x 4 single items, 16 items / 12 tuples per cell, 42 ckpts (v2 losses), "
            "k 1-8 (trained 1-4)", skills=tuple(f"s{i:02d}" for i in range(16)), single_per_skill=4, per_cell=16,
            tuples_per_cell=12, ks=tuple(range(1, 9)), trained_ks=(1, 2, 3, 4), deltas=V2_DELTAS)
"""Reference family v2 (tasks/symbolic_v2_composite.yaml: 11-16 distinct tuples per cell, mostly 15-16; 12 here,
the harder case for the cluster bootstrap), its 42 checkpoints' excess losses, and k = 5..8 following the same
law as the trained k."""
DESIGNS: dict[str, Design] = {d.name: d for d in (V1, V2)}
"""Designs by name."""


def true_breakpoint_loss(sc: Scenario, k: int) -> float:
    """The loss below which the mean competence of a k cell leaves chance under the ``"threshold"`` generator."""
    return FLOOR + sc.breakpoint_delta / k ** sc.a


def _items(sc: Scenario, rng: np.random.Generator) -> pd.DataFrame:
    rows = [((s,), 1, "single", "single") for s in sc.skills for _ in range(sc.single_per_skill)]
    for k in (k for k in sorted(set(sc.ks) | set(sc.ood_ks)) if k > 1):
        combos = list(itertools.combinations(sc.skills, k))
        pick = rng.choice(len(combos), size=min(2 * sc.tuples_per_cell, len(combos)), replace=False)
        pools = {"seen": [combos[i] for i in pick[0::2]], "heldout": [combos[i] for i in pick[1::2]]}
        for mode in sc.modes:
            for split, pool in pools.items():
                for j in range(sc.per_cell):
                    combo = pool[j % len(pool)]
                    rows.append((tuple(rng.permutation(combo)), k, mode, split))
    items = pd.DataFrame(rows, columns=["parts", "k", "mode", "split"])
    items["skills"] = items["parts"].map("+".join)
    items["key"] = items["parts"].map(lambda p: "+".join(sorted(p)))
    items["item_id"] = [f"i{i:05d}" for i in range(len(items))]
    return items


def _effects(sc: Scenario, items: pd.DataFrame, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(item effect eta_i, part effects eta_ij padded to the largest k with NaN)."""
    skill = dict(zip(sc.skills, rng.normal(0.0, sc.skill_sd, len(sc.skills))))
    keys = pd.unique(items["key"])
    tup = dict(zip(keys, rng.normal(0.0, sc.tuple_sd, len(keys))))
    for key in keys:  # a single skill's own items share the skill effect, not an extra tuple effect
        if "+" not in key and not sc.single_tuple_effect:
            tup[key] = 0.0
    base = items["key"].map(tup).to_numpy(float) + rng.normal(0.0, sc.item_sd, len(items))
    base = base + sc.heldout_shift * (items["split"] == "heldout").to_numpy(float)
    k_max = int(items["k"].max())
    parts = np.full((len(items), k_max), np.nan)
    for r, p in enumerate(items["parts"]):
        parts[r, :len(p)] = [skill[s] for s in p]
    eta = np.nanmean(parts, axis=1) + base
    part_eta = parts + base[:, None] / np.sqrt(np.maximum(1, items["k"].to_numpy()))[:, None]
    return eta, part_eta


def _continuous(sc: Scenario, loss: np.ndarray) -> np.ndarray:
    """Mean gold log-prob per checkpoint (negative; rises toward 0 as the loss falls)."""
    if sc.continuous == "hinge":
        return -6.0 + 8.0 * np.maximum(0.0, sc.hinge_loss - loss)
    return -6.0 * np.exp(1.5 * (loss - 1.64))


def simulate(sc: Scenario, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Records and checkpoints tables of one simulated run (see the module docstring)."""
    rng = np.random.default_rng(seed)
    items = _items(sc, rng)
    eta, part_eta = _effects(sc, items, rng)
    delta = np.asarray(sc.deltas, float)
    loss = FLOOR + delta
    k = items["k"].to_numpy()
    ood = np.isin(k, sc.ood_ks) & ~np.isin(k, sc.ks)
    g_item = np.full(len(items), sc.chance)
    if sc.generator == "parts":
        q_parts = np.exp(-sc.lam * delta[:, None, None] ** sc.b * np.exp(part_eta)[None])
        p_parts = sc.chance + (1.0 - sc.chance) * q_parts
        hit = rng.random(p_parts.shape) < p_parts
        success = np.where(np.isnan(part_eta)[None], True, hit).all(axis=2)
        g_item = sc.chance ** k
    elif sc.generator == "threshold":
        gap = np.maximum(0.0, sc.breakpoint_delta - (k[None] ** sc.a) * delta[:, None])
        q = -np.expm1(-sc.lam * gap * np.exp(eta)[None])
        success = rng.random(q.shape) < sc.chance + (1.0 - sc.chance) * q
    elif sc.generator == "power":
        q = 1.0 - np.minimum(1.0, sc.lam * (k[None] ** sc.a) * delta[:, None] ** sc.b * np.exp(eta)[None])
        success = rng.random(q.shape) < sc.chance + (1.0 - sc.chance) * q
    else:
        q = np.exp(-sc.lam * (k[None] ** sc.a) * delta[:, None] ** sc.b * np.exp(eta)[None])
        success = rng.random(q.shape) < sc.chance + (1.0 - sc.chance) * q
    success = np.where(ood[None], False, success)
    frames = []
    n_ck, n_it = len(delta), len(items)
    base = {"checkpoint_id": np.repeat([f"c{m:02d}" for m in range(n_ck)], n_it),
            "item_id": np.tile(items["item_id"].to_numpy(), n_ck), "skill_set": "symbolic",
            "skills": np.tile(items["skills"].to_numpy(), n_ck), "k": np.tile(k, n_ck),
            "mode": np.tile(items["mode"].to_numpy(), n_ck), "split": np.tile(items["split"].to_numpy(), n_ck),
            "n_shots": 0, "error": None, "n_tokens": np.tile(5 * k, n_ck)}
    if "exact_match" in sc.metrics:
        frames.append(pd.DataFrame({**base, "metric": "exact_match", "value": success.reshape(-1).astype(float),
                                    "chance": np.tile(g_item, n_ck)}))
    if "gold_logprob" in sc.metrics:
        y = _continuous(sc, loss)[:, None] * np.exp(eta / 2.0)[None] + rng.normal(0.0, 0.5, (n_ck, n_it))
        frames.append(pd.DataFrame({**base, "metric": "gold_logprob", "value": y.reshape(-1), "chance": np.nan}))
    records = pd.concat(frames, ignore_index=True)
    ce_tokens = 20_000
    checkpoints = pd.DataFrame({
        "checkpoint_id": [f"c{m:02d}" for m in range(n_ck)], "label": [f"c{m:02d}" for m in range(n_ck)],
        "size": "sim", "params": (1e4 * 1.2 ** np.arange(n_ck)).astype(np.int64),
        "params_nonembedding": (1e4 * 1.2 ** np.arange(n_ck)).astype(np.int64), "step": np.arange(n_ck),
        "tokens_seen": np.nan, "ce_nats_sum": loss * ce_tokens, "ce_tokens": ce_tokens, "entropy_floor": FLOOR,
    })
    return records, checkpoints
