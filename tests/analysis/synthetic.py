"""Synthetic checkpoint families and scored records generated under a stated hypothesis.

Loss follows L = E + A N^-alpha exactly (or with log-normal noise); each item's chance-corrected
exact-match competence is q = competence(k, delta, load) where load is the sum of the item's skill
difficulties (k when all are 1). Metrics are drawn consistently from one per-token probability
pt = q^(1 / n_tokens) (or a given per-token curve): an answer has k parts of `TOKENS_PER_PART`
tokens, exact match = all parts right, partial credit = fraction of parts right, gold log-prob =
n_tokens log pt + noise, multiple choice = Bernoulli(g + (1 - g) q).
"""
from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pandas as pd

SKILLS = ("rev", "rot", "swp", "srt", "pmx", "sft", "mir", "sub")
TOKENS_PER_PART = 5
METRICS = ("exact_match", "partial_credit", "mc_accuracy", "gold_logprob")
Competence = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def ag_competence(lam: float = 4.0, b: float = 2.0) -> Competence:
    """Arora-Goyal collapse: q = exp(-lam (load * delta)^b), so a = b."""
    return lambda k, delta, load: np.exp(-lam * (load * delta) ** b)


def independent_competence(lam: float = 4.0, b: float = 2.0) -> Competence:
    """Independent skills: q = prod_s exp(-lam s delta^b) = exp(-lam load delta^b), so a = 1."""
    return lambda k, delta, load: np.exp(-lam * load * delta ** b)


def make_checkpoints(sizes=(2e4, 5e4, 1.2e5, 3e5, 7e5, 1.6e6, 4e6, 1e7), *, E: float = 0.86, A: float = 40.0,
                     alpha: float = 0.35, floor_known: bool = True, loss_noise: float = 0.0,
                     seed: int = 0) -> pd.DataFrame:
    """One checkpoint per size with L = E + A N^-alpha (times exp(noise)); `true_excess` is L - E."""
    rng = np.random.default_rng(seed)
    n = np.asarray(sizes, float)
    loss = (E + A * n ** -alpha) * np.exp(rng.normal(0.0, loss_noise, len(n)))
    ce_tokens = 200_000
    return pd.DataFrame({
        "checkpoint_id": [f"ck{i:02d}" for i in range(len(n))], "label": [f"n{int(x)}" for x in n],
        "size": [f"n{int(x)}" for x in n], "params": n.astype(np.int64), "params_nonembedding": n.astype(np.int64),
        "step": np.nan, "tokens_seen": np.nan, "ce_nats_sum": loss * ce_tokens, "ce_tokens": ce_tokens,
        "entropy_floor": E if floor_known else np.nan, "true_excess": loss - E,
    })


def make_items(*, ks=(1, 2, 3, 4), modes=("conjunction", "chain"), n_tuples: int = 12, items_per_tuple: int = 8,
               items_per_skill: int = 40, skills=SKILLS, seed: int = 0) -> pd.DataFrame:
    """Items: k = 1 items per skill, and for each k > 1 `n_tuples` skill sets (half seen, half held out)."""
    rng = np.random.default_rng(seed)
    rows = [(s, 1, "single", "single") for s in skills for _ in range(items_per_skill)] if 1 in ks else []
    for k in (k for k in ks if k > 1):
        combos = list(itertools.combinations(skills, k))
        chosen = [combos[i] for i in rng.choice(len(combos), size=min(n_tuples, len(combos)), replace=False)]
        for j, combo in enumerate(chosen):
            split = "seen" if j % 2 == 0 else "heldout"
            for mode in modes:
                for _ in range(items_per_tuple):
                    rows.append(("+".join(rng.permutation(combo)), k, mode, split))
    items = pd.DataFrame(rows, columns=["skills", "k", "mode", "split"])
    items.insert(0, "item_id", [f"it{i:05d}" for i in range(len(items))])
    items["skill_set"], items["n_shots"] = "symbolic", 0
    items["n_tokens"] = TOKENS_PER_PART * items["k"]
    return items


def _loads(items: pd.DataFrame, difficulty: dict[str, float] | None) -> np.ndarray:
    scale = difficulty or {}
    return np.array([sum(scale.get(s, 1.0) for s in skills.split("+")) for skills in items["skills"]])


def make_records(checkpoints: pd.DataFrame, items: pd.DataFrame, competence: Competence, *,
                 per_token: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                 difficulty: dict[str, float] | None = None, metrics=METRICS, n_choices: int = 4,
                 p_fail: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Scores every item on every checkpoint; a fraction `p_fail` of records fail (NaN + error)."""
    rng = np.random.default_rng(seed)
    n_c, n_i = len(checkpoints), len(items)
    delta = np.repeat(checkpoints["true_excess"].to_numpy(float), n_i)
    k = np.tile(items["k"].to_numpy(), n_c)
    n_tok = np.tile(items["n_tokens"].to_numpy(), n_c)
    load = np.tile(_loads(items, difficulty), n_c)
    if per_token is None:
        q = np.clip(competence(k, delta, load), 0.0, 1.0)
        pt = np.clip(q, 1e-300, 1.0) ** (1.0 / n_tok)
    else:
        pt = np.clip(per_token(k, delta), 1e-6, 1.0)
        q = pt ** n_tok
    parts = rng.binomial(k, pt ** TOKENS_PER_PART)
    g = 1.0 / n_choices
    values = {
        "exact_match": (parts == k).astype(float), "partial_credit": parts / k,
        "mc_accuracy": (rng.random(len(q)) < g + (1 - g) * q).astype(float),
        "gold_logprob": np.minimum(0.0, n_tok * np.log(pt) + rng.normal(0.0, 0.05, len(q))),
    }
    chance = {"exact_match": 0.0, "partial_credit": 0.0, "mc_accuracy": g, "gold_logprob": np.nan}
    base = pd.DataFrame({
        "checkpoint_id": np.repeat(checkpoints["checkpoint_id"].to_numpy(), n_i),
        **{c: np.tile(items[c].to_numpy(), n_c) for c in
           ("item_id", "skill_set", "skills", "k", "mode", "split", "n_shots", "n_tokens")},
        "parts_correct": parts, "parts_total": k,
    })
    frames = []
    for metric in metrics:
        frame = base.assign(metric=metric, value=values[metric], chance=chance[metric], error=None)
        failed = rng.random(len(frame)) < p_fail
        frame.loc[failed, "value"] = np.nan
        frame.loc[failed, "error"] = "parse failure"
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def make_family(competence: Competence | None = None, *, seed: int = 0, checkpoint_kw: dict | None = None,
                item_kw: dict | None = None, record_kw: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Checkpoints and records of a whole synthetic family (A&G competence by default)."""
    checkpoints = make_checkpoints(seed=seed, **(checkpoint_kw or {}))
    items = make_items(seed=seed, **(item_kw or {}))
    records = make_records(checkpoints, items, competence or ag_competence(), seed=seed, **(record_kw or {}))
    return records, checkpoints
