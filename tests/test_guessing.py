"""Guessing baselines: the best constant answer's accuracy per skill, per item, and in scored rows."""
from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest

from harness.model.protocol import GenerationResult, LoglikelihoodResult
from harness.run.item_metrics import score_items
from skill_catalog.compose import CompositionSpec, compose_items
from skill_catalog.guessing import GUESS_SAMPLES, guess_rate, item_chance
from skill_catalog.skill import get_skill
from skill_catalog.symbolic import ALPHABET


def exact_rate(name: str) -> float:
    """The symbolic skill's best constant answer's accuracy over its whole (uniform) input space."""
    skill = get_skill("symbolic", name)
    words = ["".join(w) for w in itertools.product(ALPHABET, repeat=4)]
    return Counter(skill.apply(w) for w in words).most_common(1)[0][1] / len(words)


@pytest.mark.parametrize("name", ["pmx", "srt", "rev"])
def test_guess_rate_matches_enumeration_of_every_input(name):
    exact = exact_rate(name)
    assert abs(guess_rate("symbolic", name) - exact) < 4 * math.sqrt(exact * (1 - exact) / GUESS_SAMPLES) + 1e-3


def test_low_entropy_skills_have_high_guess_rates():
    assert guess_rate("symbolic", "pmx") > 0.1 > 0.01 > guess_rate("symbolic", "rev")
    assert 0.4 < guess_rate("natural", "parity") < 0.6


def test_item_chance_multiplies_parts_and_partial_credit_averages_them():
    spec = CompositionSpec(skill_set="symbolic", ks=(3,), modes=("conjunction", "chain"), items_per_cell=4,
                           single_items_per_skill=0, seed=0)
    for item in compose_items(spec):
        rates = [guess_rate("symbolic", s) for s in item.skills]
        exact, partial = item_chance(item)
        assert exact == pytest.approx(math.prod(rates)) and partial == pytest.approx(sum(rates) / 3)


class ConstantModel:
    """Answers every generation with one fixed text; every log-likelihood is -1."""

    def __init__(self, text: str) -> None:
        self.text = text

    def loglikelihood(self, requests):
        return [LoglikelihoodResult(-1.0, False, 1) for _ in requests]

    def loglikelihood_rolling(self, texts):
        raise NotImplementedError

    def generate_until(self, requests):
        return [GenerationResult(self.text, 1) for _ in requests]


def test_a_constant_guesser_scores_about_its_recorded_chance():
    spec = CompositionSpec(skill_set="natural", ks=(1,), modes=("conjunction",), items_per_cell=0,
                           single_items_per_skill=400, seed=3, skills=("parity",))
    items = list(compose_items(spec))
    rows = score_items(ConstantModel("even"), items, ["exact_match", "gold_logprob"], 8)
    exact = [r for r in rows if r.metric == "exact_match"]
    observed = sum(r.value for r in exact) / len(exact)
    assert len(exact) == 400 and abs(observed - exact[0].chance) < 0.1
    assert {r.metric for r in rows if r.chance > 0} == {"exact_match", "partial_credit", "greedy_match"}
