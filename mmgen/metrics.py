"""Answer metrics for the closed loop, and accuracies with their counts and bootstrap CIs.

- `relaxed_accuracy`: ChartQA's official rule, exactly as pix2struct's `relaxed_correctness`
  (which lmms-eval reuses) defines it, so numbers compare with published ones. Both answers are
  read with Python's float(), a trailing `%` dividing by 100; when both parse and the target is
  not zero, the prediction is right within 5% relative error. Otherwise the two strings must be
  equal ignoring case, with no other normalisation: "1,234", "42." or "The answer is 42" all miss.
- `relaxed_accuracy_loose`, reported beside it under its own name: right when the official rule
  says so, or after reading the answer the way a person would (answer labels, thousands
  separators, percent signs, trailing punctuation, the last number of a sentence).
- `multiple_choice`: the option a free-text answer picks ("B", "(B)", "B. copepods",
  "Answer: B", or the option's own text), compared with the option the target names.
- `exact_match`: equal after normalising case, whitespace and trailing punctuation.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

MAX_RELATIVE_CHANGE = 0.05  # ChartQA's tolerance for numeric answers
LETTERS = "ABCDEFGHIJ"
# "Answer:", "The correct answer is", and SpatialMap's numbered answers ("A3. 0")
ANSWER_LABEL = re.compile(r"^\s*(?:(?:the\s+)?(?:correct\s+|final\s+)?answer\s*(?:is\b)?\s*:?"
                          r"|A\d+\s*[.:])\s*", re.IGNORECASE)
TRAILING = ".,;:!?\"'`"
NUMBER = re.compile(r"[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+\u2212]?\.\d+")
LEADING_LETTER = re.compile(r"^\(?([A-J])(?:\)|[.:]|\)?$)\s*(.*)$", re.DOTALL)
# the label in any case, the letter in capitals only: "the answer is a bird" picks nothing
LABELLED_LETTER = re.compile(r"(?i:\banswer\s*(?:is\b)?)\s*[:\-]?\s*\(?([A-J])\)?(?![\w'])")
BRACKETED_LETTER = re.compile(r"\(([A-J])\)")


# ---------------------------------------------------------------- ChartQA relaxed accuracy


def _official_float(text: str) -> float | None:
    """pix2struct's `_to_float`: float(), with a trailing % meaning hundredths."""
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def relaxed_correctness(prediction: str, target: str,
                        max_relative_change: float = MAX_RELATIVE_CHANGE) -> bool:
    """ChartQA's official relaxed correctness of one prediction against one target."""
    prediction_float, target_float = _official_float(prediction), _official_float(target)
    if prediction_float is not None and target_float:
        return abs(prediction_float - target_float) / abs(target_float) <= max_relative_change
    return prediction.lower() == target.lower()


def normalise(text: str) -> str:
    """Lower case, whitespace collapsed, trailing punctuation and wrapping quotes dropped."""
    return " ".join(text.casefold().split()).strip(TRAILING).strip()


def strip_label(text: str) -> str:
    """The answer after a leading 'Answer:' / 'The answer is' / 'A3.' label."""
    return ANSWER_LABEL.sub("", text, count=1).strip()


def _number(text: str) -> float | None:
    """A number written with optional thousands separators, a unicode minus, or a percent sign."""
    text = text.strip().removesuffix("%").strip().replace("\u2212", "-")
    if not NUMBER.fullmatch(text):
        return None
    return float(text.replace(",", ""))


def loose_relaxed_correctness(prediction: str, target: str,
                              max_relative_change: float = MAX_RELATIVE_CHANGE) -> bool:
    """The official rule, or the same tolerance after reading the answer as a person would."""
    if relaxed_correctness(prediction, target, max_relative_change):
        return True
    prediction_text, target_text = normalise(strip_label(prediction)), normalise(target)
    target_number = _number(target_text)
    if target_number is None:
        return prediction_text == target_text
    numbers = NUMBER.findall(prediction_text)
    if not numbers:
        return False
    # a sentence's last number is where models put the answer ("In 2019 it was 42")
    value = float(numbers[-1].replace(",", "").replace("\u2212", "-"))
    if target_number == 0:
        return value == 0
    return abs(value - target_number) / abs(target_number) <= max_relative_change


# ---------------------------------------------------------------- multiple choice


def option_letters(options: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """Options as letter -> text: a list becomes A, B, C...; a mapping keeps its letters."""
    if isinstance(options, Mapping):
        return {str(letter).strip().upper(): str(text) for letter, text in options.items()}
    return {LETTERS[index]: str(text) for index, text in enumerate(options)}


def chosen_option(answer: str, options: Mapping[str, str]) -> str | None:
    """The letter of the option a free-text answer picks, or None when it picks none or several.

    Read in this order: the whole answer is an option's text; it starts with a letter marked
    as a choice ("B", "(B)", "B.", "B) plants", "B: plants"); it says "answer is B" or
    "answer: (B)"; it holds one bracketed letter "(B)"; exactly one option's text occurs in it.
    """
    text = strip_label(answer)
    by_text = {normalise(option): letter for letter, option in options.items()}
    if normalise(text) in by_text:
        return by_text[normalise(text)]
    if len(text.strip(TRAILING + "() ")) == 1 and text.strip(TRAILING + "() ").upper() in options:
        return text.strip(TRAILING + "() ").upper()  # a lone letter, any case
    leading = LEADING_LETTER.match(text)
    if leading and leading[1] in options:
        return leading[1]
    for pattern in (LABELLED_LETTER, BRACKETED_LETTER):
        letters = {letter.upper() for letter in pattern.findall(answer)} & options.keys()
        if len(letters) == 1:
            return letters.pop()
    spoken = normalise(answer)  # option texts as whole words: "2" is not in "25.2" or "2.5"
    found = {letter for option, letter in by_text.items()
             if option and re.search(rf"(?<![\w.]){re.escape(option)}(?!\w|[.,]\d)", spoken)}
    # "mosquito life cycle" also contains "life cycle": keep only the longest matches
    found = {letter for letter in found
             if not any(normalise(options[letter]) in normalise(options[other])
                        and letter != other for other in found)}
    return found.pop() if len(found) == 1 else None


def multiple_choice_correctness(prediction: str, target: str,
                                options: Mapping[str, str]) -> bool:
    """True when the prediction picks the option the target names."""
    wanted = chosen_option(target, options)
    return wanted is not None and chosen_option(prediction, options) == wanted


# ---------------------------------------------------------------- exact match


def exact_match(prediction: str, target: str) -> bool:
    """Equal after normalising case, whitespace and trailing punctuation."""
    return normalise(prediction) == normalise(target)


# ---------------------------------------------------------------- per-sample scoring


Rule = Callable[[str, str, Mapping[str, str]], bool]
RULES: dict[str, dict[str, Rule]] = {
    # metric -> {reported name: rule}; the first name is the metric itself
    "relaxed_accuracy": {
        "relaxed_accuracy": lambda p, t, o: relaxed_correctness(p, t),
        "relaxed_accuracy_loose": lambda p, t, o: loose_relaxed_correctness(p, t),
    },
    "multiple_choice": {"multiple_choice": multiple_choice_correctness},
    "exact_match": {"exact_match": lambda p, t, o: exact_match(p, t)},
}


def score(metric: str, prediction: str, target: str,
          options: Mapping[str, str] | None = None) -> dict[str, bool]:
    """Correctness of one prediction under the metric and each variant reported beside it."""
    if metric not in RULES:
        raise ValueError(f"dataset.metric '{metric}' is not one of {', '.join(RULES)}")
    return {name: bool(rule(prediction, target, options or {}))
            for name, rule in RULES[metric].items()}


# ---------------------------------------------------------------- accuracies with CIs


def bootstrap_ci(correct_by_split: Sequence[Sequence[bool]], seed: int = 0,
                 resamples: int = 2000, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of the splits' accuracies.

    Each split's samples are resampled with replacement on their own (a stratified bootstrap,
    since the headline is a mean over splits). Resampling n outcomes of which k are right and
    counting the right ones is a Binomial(n, k/n) draw, so the counts are drawn directly: the
    same distribution, without materialising resamples x n indices.
    """
    rng = np.random.default_rng(seed)
    means = np.zeros(resamples)
    for outcomes in correct_by_split:
        count = len(outcomes)
        means += rng.binomial(count, sum(map(bool, outcomes)) / count, resamples) / count
    means /= len(correct_by_split)
    low, high = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return round(float(low), 4), round(float(high), 4)


def accuracy(correct: Sequence[bool], splits: Sequence[str | None] | None = None,
             seed: int = 0, resamples: int = 2000) -> dict:
    """Accuracy with count, correct and 95% CI; with splits, each split's and their mean.

    The headline `accuracy` is the mean of the split accuracies (ChartQA's paper figure is the
    mean of its human and augmented splits); without splits it is the plain share right.
    """
    if not correct:
        raise ValueError("no predictions to score: the eval set is empty")
    splits = list(splits) if splits is not None else [None] * len(correct)
    groups: dict[str, list[bool]] = {}
    for outcome, split in zip(correct, splits):
        groups.setdefault(split if split is not None else "all", []).append(bool(outcome))
    per_split = {name: {"accuracy": round(sum(values) / len(values), 4), "correct": sum(values),
                        "count": len(values),
                        "ci95": list(bootstrap_ci([values], seed, resamples))}
                 for name, values in sorted(groups.items())}
    mean = sum(sum(values) / len(values) for values in groups.values()) / len(groups)
    summary = {"accuracy": round(mean, 4), "correct": int(sum(map(bool, correct))),
               "count": len(correct),
               "ci95": list(bootstrap_ci(list(groups.values()), seed, resamples))}
    if len(per_split) > 1 or "all" not in per_split:
        summary["splits"] = per_split
    return summary


def accuracy_text(entry: dict | None) -> str:
    """An accuracy with its 95% CI as one short string: `0.329 [0.300, 0.358]`."""
    if not entry:
        return ""
    low, high = entry["ci95"]
    return f"{entry['accuracy']:.3f} [{low:.3f}, {high:.3f}]"
