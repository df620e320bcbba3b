"""Format failures (wrong part count, no stop) are told apart from skill failures (right count, a part wrong)."""
from __future__ import annotations

import math

from harness.model.protocol import GenerationResult
from harness.records import Record, answer_failure, records_frame
from harness.run.item_metrics import score_items
from skill_catalog.compose import CompositionSpec, compose_items


def _record(metric: str = "exact_match", value: float = 0.0, predicted: int = 4, correct: int = 4, total: int = 4,
            stopped: float = 1.0) -> Record:
    return Record(checkpoint_id="c", checkpoint_label="c", task="t", item_id="i", skill_set="symbolic_v2",
                  skills=("rev",) * total, k=total, mode="conjunction", split="seen", n_shots=0, metric=metric,
                  value=value, parts_total=total, parts_predicted=predicted, parts_correct=correct, stopped=stopped)


def test_answer_failure_separates_format_from_skill() -> None:
    frame = records_frame([
        _record(value=1.0),                                   # right
        _record(predicted=3, correct=3),                      # stopped after 3 of 4 parts: format
        _record(predicted=5, correct=4),                      # one part too many: format
        _record(stopped=0.0, predicted=4, correct=4),         # ran to the token limit: format
        _record(predicted=4, correct=2),                      # right count, two parts wrong: skill
        _record(metric="partial_credit", value=0.5, predicted=4, correct=2, stopped=math.nan),  # unknown stop: skill
        _record(metric="gold_logprob", value=-3.0),           # not a generated answer
        _record(value=math.nan, predicted=-1, correct=-1),    # failed request
    ])
    assert answer_failure(frame).tolist() == ["none", "format", "format", "format", "skill", "skill", None, None]


class _FixedModel:
    """Answers every generation with one text and stop flag (a fake model for the scorer)."""

    def __init__(self, text: str, stopped: bool | None) -> None:
        self.text, self.stopped = text, stopped

    def loglikelihood(self, requests):
        raise AssertionError("not used")

    def loglikelihood_rolling(self, texts):
        raise AssertionError("not used")

    def generate_until(self, requests):
        return [GenerationResult(self.text, 3, stopped=self.stopped) for _ in requests]


def test_generation_rows_record_whether_generation_stopped() -> None:
    items = list(compose_items(CompositionSpec("symbolic_v2", ks=(1,), single_items_per_skill=1, split_rule="pairs")))
    for stopped, expected in ((True, 1.0), (False, 0.0), (None, math.nan)):
        rows = score_items(_FixedModel("abcd", stopped), items[:2], ("exact_match",), 8)
        values = {r.stopped for r in rows}
        assert len(rows) == 4 and (values == {expected} or (math.isnan(expected) and all(map(math.isnan, values))))


class _CharTokenizer:
    """Token i is the i-th character of `chars`; token 0 is EOS (decoded to nothing)."""

    chars = "\0ab|\n"

    def decode(self, tokens, skip_special_tokens=True):
        return "".join(self.chars[t] for t in tokens if not (skip_special_tokens and t == 0))


def _generate(tokens: list[int], max_new_tokens: int) -> GenerationResult:
    from harness.model.generation import _Row
    from harness.model.protocol import GenerationRequest

    row, tok = _Row(GenerationRequest("q", ("\n",), max_new_tokens), eos=0), _CharTokenizer()
    for t in tokens:
        if row.step(t, gap=1.0, finite=True, tokenizer=tok):
            break
    return row.done(tok).result


def test_greedy_generation_says_whether_it_stopped() -> None:
    assert _generate([1, 2, 4, 1], 8) == GenerationResult("ab", 3, stopped=True)   # the stop string
    assert _generate([1, 2, 0], 8) == GenerationResult("ab", 3, stopped=True)      # EOS
    assert _generate([1, 3, 2, 3, 1], 3) == GenerationResult("a|b", 3, stopped=False)  # the token limit
