"""Per-skill cross-entropy: the loss on the gold answer tokens of each skill's single-skill items.

`nats_per_token = -sum(gold log-prob value of answer and stop) / sum(answer and stop tokens)` over the k = 1
items of a skill, per checkpoint; failed records are counted, never summed as 0.
"""
from __future__ import annotations

import pandas as pd

from harness.records import skill_name

SKILL_LOSS_COLUMNS = ("checkpoint_id", "skill", "n_items", "n_failed", "nats_sum", "n_tokens", "nats_per_token")


def per_skill_loss(records: pd.DataFrame) -> pd.DataFrame:
    """One row per (checkpoint, skill) from the `gold_logprob` records of single-skill items."""
    gold = records[(records["metric"] == "gold_logprob") & (records["k"] == 1)]
    if gold.empty:
        return pd.DataFrame(columns=list(SKILL_LOSS_COLUMNS))
    gold = gold.assign(skills=[skill_name(s) for s in gold["skills"]])  # the skill's name (k = 1)
    failed = gold["value"].isna()
    ok = gold[~failed]
    sums = ok.groupby(["checkpoint_id", "skills"]).agg(nats_sum=("value", lambda s: -s.sum()),
                                                        n_tokens=("n_tokens", "sum"), n_items=("item_id", "size"))
    fails = gold[failed].groupby(["checkpoint_id", "skills"]).size().rename("n_failed")
    table = sums.join(fails, how="outer").reset_index().rename(columns={"skills": "skill"})
    table["n_failed"] = table["n_failed"].fillna(0).astype(int)
    table["n_items"] = table["n_items"].fillna(0).astype(int)
    table["nats_per_token"] = table["nats_sum"] / table["n_tokens"].where(table["n_tokens"] > 0)
    return table[list(SKILL_LOSS_COLUMNS)]
