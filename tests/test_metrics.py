"""Metrics: ChartQA's official relaxed accuracy and its loose variant, multiple choice, exact
match, and accuracies with bootstrap confidence intervals."""
from __future__ import annotations

import numpy as np
import pytest

from mmgen.metrics import (
    accuracy,
    bootstrap_ci,
    chosen_option,
    exact_match,
    loose_relaxed_correctness,
    option_letters,
    relaxed_correctness,
    score,
)

# (prediction, target, official relaxed correctness, loose variant)
RELAXED_CASES = [
    ("42", "42", True, True),
    ("43", "42", True, True),  # 2.4% off: within 5%
    ("104.9", "100", True, True),
    ("105.1", "100", False, False),
    ("paris", "Paris", True, True),  # case never matters
    # thousands separators: float() refuses "1,234", so the official rule wants the same string
    ("1,234", "1234", False, True),
    ("1,234", "1,234", True, True),
    # percent signs: a trailing % divides by 100, on either side
    ("45%", "0.45", True, True),
    ("0.45", "45%", True, True),
    ("45", "45%", False, True),
    ("45%", "45", False, True),
    # a number inside a sentence: only the loose variant reads it (the last number)
    ("The answer is 42.", "42", False, True),
    ("In 2019 the value was 25.1", "25.2", False, True),
    ("42.", "42", True, True),  # float() reads "42." as 42
    ("Paris.", "Paris", False, True),  # trailing punctuation
    ("Answer: Paris", "Paris", False, True),
    # an empty answer is never right
    ("", "42", False, False),
    ("", "Paris", False, False),
    # a zero target cannot take a relative error: exact string only
    ("0", "0", True, True),
    ("0.0", "0", False, True),
    ("0.01", "0", False, False),
    ("Delhi and Paris", "Paris", False, False),
]


@pytest.mark.parametrize("prediction, target, official, loose", RELAXED_CASES)
def test_relaxed_accuracy_matches_chartqa_official_rule(prediction, target, official, loose):
    assert relaxed_correctness(prediction, target) is official
    assert loose_relaxed_correctness(prediction, target) is loose
    assert score("relaxed_accuracy", prediction, target) == {
        "relaxed_accuracy": official, "relaxed_accuracy_loose": loose}


AI2D_OPTIONS = option_letters(["copepods", "plants", "microzooplankton", "none"])
SPATIAL_OPTIONS = option_letters(["5", "3", "2", "0"])


@pytest.mark.parametrize("answer, options, letter", [
    ("B", AI2D_OPTIONS, "B"),
    ("(B)", AI2D_OPTIONS, "B"),
    ("B. plants", AI2D_OPTIONS, "B"),
    ("B) plants", AI2D_OPTIONS, "B"),
    ("Answer: B", AI2D_OPTIONS, "B"),
    ("The answer is (B).", AI2D_OPTIONS, "B"),
    ("b", AI2D_OPTIONS, "B"),
    # the option given as text instead of a letter
    ("plants", AI2D_OPTIONS, "B"),
    ("Plants.", AI2D_OPTIONS, "B"),
    ("I think it is the plants.", AI2D_OPTIONS, "B"),
    ("microzooplankton", AI2D_OPTIONS, "C"),
    # SpatialMap's gold answers are numbered and give the option's text
    ("A3. 0", SPATIAL_OPTIONS, "D"),
    ("0", SPATIAL_OPTIONS, "D"),
    ("There are 0 objects.", SPATIAL_OPTIONS, "D"),
    # nothing, or more than one option, is no choice; "a" as an article is not option A
    ("", AI2D_OPTIONS, None),
    ("the answer is a bird", AI2D_OPTIONS, None),
    ("A cat", AI2D_OPTIONS, None),
    ("3 objects, not 5", SPATIAL_OPTIONS, None),
    ("25.2", option_letters(["1", "2"]), None),
    ("2.5", option_letters(["1", "2"]), None),
    ("plants or copepods", AI2D_OPTIONS, None),
])
def test_chosen_option_reads_free_text(answer, options, letter):
    assert chosen_option(answer, options) == letter


def test_longest_option_text_wins():
    options = option_letters(["life cycle", "Mosquito life cycle", "Fly life cycle"])
    assert chosen_option("It shows the mosquito life cycle.", options) == "B"


def test_multiple_choice_compares_with_the_options_the_target_names():
    assert score("multiple_choice", "plants", "B. plants", AI2D_OPTIONS) == {
        "multiple_choice": True}
    assert score("multiple_choice", "(A)", "B. plants", AI2D_OPTIONS)["multiple_choice"] is False
    assert score("multiple_choice", "D", "A3. 0", SPATIAL_OPTIONS)["multiple_choice"] is True
    assert score("multiple_choice", "", "A3. 0", SPATIAL_OPTIONS)["multiple_choice"] is False
    assert option_letters({"a": "x", "b": "y"}) == {"A": "x", "B": "y"}


def test_exact_match_normalises_case_spaces_and_trailing_punctuation():
    assert exact_match("  Jun  and JUL. ", "Jun and Jul")
    assert not exact_match("Jun-Jul", "Jun and Jul")
    assert not exact_match("", "No")
    assert score("exact_match", "no.", "No") == {"exact_match": True}
    with pytest.raises(ValueError, match="dataset.metric 'bleu'"):
        score("bleu", "a", "a")


def test_bootstrap_ci_is_sane():
    outcomes = [True] * 120 + [False] * 180  # 0.4 of 300
    low, high = bootstrap_ci([outcomes], seed=0)
    assert low < 0.4 < high
    # about the normal approximation's +-1.96 standard errors
    half_width = 1.96 * np.sqrt(0.4 * 0.6 / 300)
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.15)
    # same seed, same interval; more samples, narrower interval
    assert bootstrap_ci([outcomes], seed=0) == (low, high)
    wide = bootstrap_ci([outcomes[::10]], seed=0)
    assert wide[1] - wide[0] > 2.5 * (high - low)
    assert bootstrap_ci([[True] * 50]) == (1.0, 1.0)
    assert bootstrap_ci([[False] * 50]) == (0.0, 0.0)


def test_bootstrap_ci_equals_resampling_the_samples():
    """Drawing binomial counts is the same distribution as resampling indices."""
    outcomes = np.array([True] * 33 + [False] * 67)
    rng = np.random.default_rng(1)
    means = outcomes[rng.integers(0, 100, (20000, 100))].mean(axis=1)
    brute = np.quantile(means, [0.025, 0.975])
    assert bootstrap_ci([outcomes.tolist()], seed=3, resamples=20000) == pytest.approx(
        tuple(brute), abs=0.011)


def test_accuracy_reports_each_split_and_their_mean():
    correct = [True] * 10 + [False] * 30 + [True] * 50 + [False] * 10  # human 0.25, aug 5/6
    splits = ["human"] * 40 + ["augmented"] * 60
    summary = accuracy(correct, splits, seed=0, resamples=1000)
    assert summary["splits"]["human"]["accuracy"] == 0.25
    assert summary["splits"]["human"]["count"] == 40
    assert summary["splits"]["augmented"]["accuracy"] == pytest.approx(0.8333, abs=1e-4)
    assert summary["accuracy"] == pytest.approx((0.25 + 5 / 6) / 2, abs=1e-4)  # not pooled 0.6
    assert summary["correct"] == 60 and summary["count"] == 100
    low, high = summary["ci95"]
    assert low < summary["accuracy"] < high
    for entry in summary["splits"].values():
        assert entry["ci95"][0] <= entry["accuracy"] <= entry["ci95"][1]
    plain = accuracy([True, False, True, True])
    assert plain["accuracy"] == 0.75 and "splits" not in plain
    with pytest.raises(ValueError, match="empty"):
        accuracy([])
