"""Scores items with a model: builds the requests of every item, runs them batched, and returns rows.

One row per (item, metric), with sums and counts rather than means, and NaN plus a reason when a
request failed. Metrics:

- ``exact_match``: greedy generation graded part by part by the skills' checkers (all parts right);
- ``partial_credit``: fraction of parts right in that generation;
- ``greedy_match``: teacher-forced check that argmax equals the gold at every answer token and at
  the stop token (equals greedy exact match when the checker is plain string equality);
- ``mc_accuracy``, ``mc_accuracy_char``, ``mc_accuracy_byte``: multiple choice over gold and
  one-skill-broken answers, by summed log-prob, per character, per byte;
- ``gold_logprob``: log-prob of the gold answer plus its stop string, in nats.

``chance`` is each metric's guessing baseline: 1 / choices for multiple choice, the best constant
answer's accuracy (`skill_catalog.guessing`) for exact match, greedy match and partial credit.
"""
from __future__ import annotations

import math
from typing import Sequence

from harness.model import GenerationRequest, LanguageModel, LoglikelihoodRequest, LoglikelihoodResult
from skill_catalog.compose import Item
from skill_catalog.grading import grade
from skill_catalog.guessing import item_chance

SCORING_METRICS = {
    "exact_match": ("exact_match", "partial_credit"),
    "partial_credit": ("exact_match", "partial_credit"),
    "multiple_choice": ("mc_accuracy", "mc_accuracy_char", "mc_accuracy_byte"),
    "gold_logprob": ("gold_logprob", "greedy_match"),
}
"""Metrics recorded for each scoring mode of a task."""


def _row(item: Item, metric: str, value: float, **extra) -> dict:
    row = {"item_id": item.item_id, "skill_set": item.skill_set, "skills": "+".join(item.skills), "k": item.k,
           "mode": item.mode, "split": item.split, "n_shots": item.n_shots, "metric": metric, "value": value,
           "error": None, "chance": math.nan, "prediction": None, "logprob_sum": math.nan, "n_tokens": 0, "n_bytes": 0,
           "n_chars": 0, "parts_correct": -1, "parts_total": len(item.part_answers)}
    row.update(extra)
    return row


def _gold_rows(item: Item, result: LoglikelihoodResult) -> list[dict]:
    text = item.answer + item.stop
    common = dict(logprob_sum=result.logprob, n_tokens=result.n_tokens, n_chars=len(text),
                  n_bytes=len(text.encode()), error=result.error)
    greedy = math.nan if result.error else float(result.is_greedy)
    return [_row(item, "gold_logprob", result.logprob, chance=math.nan, **common),
            _row(item, "greedy_match", greedy, chance=item_chance(item)[0], **common)]


def _choice_rows(item: Item, results: Sequence[LoglikelihoodResult]) -> list[dict]:
    failed = next((r.error for r in results if r.error), None)
    if failed or any(math.isnan(r.logprob) for r in results):
        reason = failed or "NaN log-probability for a choice"
        return [_row(item, m, math.nan, error=reason, chance=1 / len(item.choices))
                for m in SCORING_METRICS["multiple_choice"]]
    scores = {
        "mc_accuracy": [r.logprob for r in results],
        "mc_accuracy_char": [r.logprob / max(1, len(c)) for r, c in zip(results, item.choices)],
        "mc_accuracy_byte": [r.logprob / max(1, len(c.encode())) for r, c in zip(results, item.choices)],
    }
    rows = []
    for metric, values in scores.items():
        best = max(range(len(values)), key=values.__getitem__)
        rows.append(_row(item, metric, float(best == item.gold_index), chance=1 / len(item.choices),
                         prediction=item.choices[best], logprob_sum=results[item.gold_index].logprob,
                         n_tokens=results[item.gold_index].n_tokens))
    return rows


def _generation_rows(item: Item, text: str, n_tokens: int, error: str | None) -> list[dict]:
    exact_chance, partial_chance = item_chance(item)
    if error:
        return [_row(item, "exact_match", math.nan, error=error, chance=exact_chance),
                _row(item, "partial_credit", math.nan, error=error, chance=partial_chance)]
    g = grade(item, text)
    common = dict(prediction=text, n_tokens=n_tokens, parts_correct=g.parts_correct)
    return [_row(item, "exact_match", float(g.exact), chance=exact_chance, **common),
            _row(item, "partial_credit", g.parts_correct / g.parts_total, chance=partial_chance, **common)]


def score_items(model: LanguageModel, items: Sequence[Item], scoring: Sequence[str], max_new_tokens: int) -> list[dict]:
    """All metric rows of `items` under the task's scoring modes (one batched call per request kind)."""
    modes = set(scoring)
    ll_requests: list[LoglikelihoodRequest] = []
    spans: list[tuple[int, int, int]] = []  # per item: start of gold request, start and end of choices
    for item in items:
        start = len(ll_requests)
        if "gold_logprob" in modes:
            ll_requests.append(LoglikelihoodRequest(item.prompt, item.answer + item.stop))
        choice_start = len(ll_requests)
        if "multiple_choice" in modes:
            ll_requests.extend(LoglikelihoodRequest(item.prompt, c) for c in item.choices)
        spans.append((start, choice_start, len(ll_requests)))
    ll_results = model.loglikelihood(ll_requests) if ll_requests else []
    generate = modes & {"exact_match", "partial_credit"}
    gen_results = model.generate_until(
        [GenerationRequest(i.prompt, (i.stop,), max_new_tokens) for i in items]) if generate else []
    rows: list[dict] = []
    for n, (item, (start, choice_start, end)) in enumerate(zip(items, spans)):
        if "gold_logprob" in modes:
            rows += _gold_rows(item, ll_results[start])
        if "multiple_choice" in modes:
            rows += _choice_rows(item, ll_results[choice_start:end])
        if generate:
            g = gen_results[n]
            rows += _generation_rows(item, g.text, g.n_tokens, g.error)
    return rows
