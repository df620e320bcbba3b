"""Scores items with a model: builds the requests of every item, runs them batched, and returns rows.

One row per (item, metric), with sums and counts rather than means, and NaN plus a reason when a
request failed. Metrics:

- ``exact_match``: greedy generation graded part by part by the skills' checkers (all parts right);
- ``partial_credit``: parts right in their position / max(gold parts, generated parts) in that
  generation (`skill_catalog.grading`: extra or repeated parts cost credit);
- ``greedy_match``: teacher-forced check that the argmax is the gold token at every answer token and,
  after the answer, a stop token: EOS or any token whose text starts with the stop string (so a
  tokenizer that merges ``"\n\n"`` can match a ``"\n"`` stop); what greedy generation of the gold
  tokens would produce;
- ``mc_accuracy``, ``mc_accuracy_char``, ``mc_accuracy_byte``: multiple choice over gold and
  one-skill-broken answers, by summed log-prob, per character, per byte;
- ``gold_logprob``: log-prob of the gold answer plus the probability of ending it there (any stop
  token, as for greedy match), in nats.

``chance`` is each metric's guessing baseline: 1 / choices for multiple choice, the best constant
answer's accuracy (`skill_catalog.guessing`) for exact match, greedy match and partial credit.
``choices_only`` is, for multiple choice, whether the same rule picks the gold with the question
removed (each choice scored after an empty context, lm-eval's unconditional score): averaged over
items it is the accuracy that the choices' own bias earns, the baseline a model can fall below.
"""
from __future__ import annotations

import math
from typing import Sequence

from harness.model.protocol import GenerationRequest, LanguageModel, LoglikelihoodRequest, LoglikelihoodResult
from harness.records import SCORING_METRICS, Record
from skill_catalog.compose import Item
from skill_catalog.grading import grade
from skill_catalog.guessing import item_chance



def _row(item: Item, metric: str, value: float, **extra) -> Record:
    """One item's record of `metric`; the checkpoint and task fields are filled in by the runner."""
    return Record(checkpoint_id="", checkpoint_label="", task="", item_id=item.item_id, skill_set=item.skill_set,
                  skills=tuple(item.skills), k=item.k, mode=item.mode, split=item.split, n_shots=item.n_shots,
                  metric=metric, value=value, parts_total=len(item.part_answers), **extra)


def _gold_rows(item: Item, result: LoglikelihoodResult) -> list[Record]:
    text = item.answer + item.stop  # the stop token's text may be longer; the counts use the stop string
    common = dict(logprob_sum=result.logprob, n_tokens=result.n_tokens, n_chars=len(text),
                  n_bytes=len(text.encode()), error=result.error)
    greedy = math.nan if result.error else float(result.is_greedy)
    return [_row(item, "gold_logprob", result.logprob, chance=math.nan, **common),
            _row(item, "greedy_match", greedy, chance=item_chance(item)[0], **common)]


def _failure(results: Sequence[LoglikelihoodResult]) -> str | None:
    failed = next((r.error for r in results if r.error), None)
    return failed or ("NaN log-probability for a choice" if any(math.isnan(r.logprob) for r in results) else None)


def _choice_scores(item: Item, results: Sequence[LoglikelihoodResult]) -> dict[str, list[float]]:
    return {
        "mc_accuracy": [r.logprob for r in results],
        "mc_accuracy_char": [r.logprob / max(1, len(c)) for r, c in zip(results, item.choices)],
        "mc_accuracy_byte": [r.logprob / max(1, len(c.encode())) for r, c in zip(results, item.choices)],
    }


def _best(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def _choice_rows(item: Item, results: Sequence[LoglikelihoodResult],
                 unconditional: Sequence[LoglikelihoodResult]) -> list[Record]:
    chance = 1 / len(item.choices)
    failed = _failure(results)
    if failed:
        return [_row(item, m, math.nan, error=failed, chance=chance) for m in SCORING_METRICS["multiple_choice"]]
    bias = None if _failure(unconditional) else _choice_scores(item, unconditional)
    rows = []
    for metric, values in _choice_scores(item, results).items():
        best = _best(values)
        choices_only = math.nan if bias is None else float(_best(bias[metric]) == item.gold_index)
        rows.append(_row(item, metric, float(best == item.gold_index), chance=chance, choices_only=choices_only,
                         prediction=item.choices[best], logprob_sum=results[item.gold_index].logprob,
                         n_tokens=results[item.gold_index].n_tokens))
    return rows


def _generation_rows(item: Item, text: str, n_tokens: int, error: str | None,
                     stopped: bool | None = None) -> list[Record]:
    exact_chance, partial_chance = item_chance(item)
    if error:
        return [_row(item, "exact_match", math.nan, error=error, chance=exact_chance),
                _row(item, "partial_credit", math.nan, error=error, chance=partial_chance)]
    g = grade(item, text)
    common = dict(prediction=text, n_tokens=n_tokens, parts_correct=g.parts_correct, parts_predicted=g.parts_predicted,
                  stopped=math.nan if stopped is None else float(stopped))
    return [_row(item, "exact_match", float(g.exact), chance=exact_chance, **common),
            _row(item, "partial_credit", g.partial, chance=partial_chance, **common)]


def gold_request(item: Item) -> LoglikelihoodRequest:
    """The request behind ``gold_logprob`` and ``greedy_match``: the answer, then any token that ends it."""
    return LoglikelihoodRequest(item.prompt, item.answer, item.stop)


def score_items(model: LanguageModel, items: Sequence[Item], scoring: Sequence[str],
                max_new_tokens: int) -> list[Record]:
    """All `Record`s of `items` under the task's scoring modes (one batched call per request kind), with empty
    checkpoint and task fields for the caller to fill in."""
    modes = set(scoring)
    ll_requests: list[LoglikelihoodRequest] = []
    spans: list[tuple[int, int, int]] = []  # per item: start of gold request, of choices, of choices alone
    for item in items:
        start = len(ll_requests)
        if "gold_logprob" in modes:
            ll_requests.append(gold_request(item))
        choice_start = len(ll_requests)
        if "multiple_choice" in modes:
            ll_requests.extend(LoglikelihoodRequest(item.prompt, c) for c in item.choices)
            ll_requests.extend(LoglikelihoodRequest("", c) for c in item.choices)
        spans.append((start, choice_start, len(ll_requests)))
    ll_results = model.loglikelihood(ll_requests) if ll_requests else []
    generate = modes & {"exact_match", "partial_credit"}
    gen_results = model.generate_until(
        [GenerationRequest(i.prompt, (i.stop,), max_new_tokens) for i in items]) if generate else []
    rows: list[Record] = []
    for n, (item, (start, choice_start, end)) in enumerate(zip(items, spans)):
        if "gold_logprob" in modes:
            rows += _gold_rows(item, ll_results[start])
        if "multiple_choice" in modes:
            middle = choice_start + len(item.choices)
            rows += _choice_rows(item, ll_results[choice_start:middle], ll_results[middle:end])
        if generate:
            g = gen_results[n]
            rows += _generation_rows(item, g.text, g.n_tokens, g.error, g.stopped)
    return rows
