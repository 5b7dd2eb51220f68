"""Cheap filters that run before the target model: duplicates, answer format, lengths.

Each check looks at one sample's question and answer (or, for duplicates, the questions already
kept for the same image) and names the first rule it breaks, or None.

Rules, in the order they apply:
- `length`: question or answer shorter or longer than the configured bounds (characters).
- `choice`: the question lists options ("Options: A. x B. y", "Options: [x, y]", "Choices: x, y")
  and the answer is neither an option's letter, nor its text, nor "letter. text".
- `numeric`: the question asks for a number (it matches `numeric_question_pattern` and lists no
  options) and the answer does not parse as one: an optional sign or currency, digits with
  optional thousands commas and decimals, then at most two unit words or a percent sign; or a
  number word from zero to twenty.
- `duplicate_exact`: the same question (case, spacing and punctuation ignored) was already kept
  for this image.
- `duplicate_near`: a question kept for this image shares at least `near_duplicates` of its
  content words (Jaccard similarity of the word sets, function words ignored): reordered or
  re-punctuated repeats go, while "sum of Apples and Pears" vs "... and Plums" (0.5) stays.
"""
from __future__ import annotations

import re
from collections import defaultdict

from mmgen.scoring import prompt_and_answer

OPTIONS_HEADER = re.compile(r"\b(?:options|choices)\b[^:\n]*:\s*", re.IGNORECASE)
LETTERED_OPTION = re.compile(r"(?:^|\s|\()\(?([A-J])[\.\)]\s+(.+?)(?=\s+\(?[A-J][\.\)]\s|\s*\n|$)",
                             re.DOTALL)
ANSWER_LABEL = re.compile(r"^(?:answer\s*:|A\d+\s*[\.:])\s*", re.IGNORECASE)
# a reasoning sample's answer ends in its own line "Answer: <final answer>" (mode vqa, tqa)
FINAL_ANSWER_LINE = re.compile(r"\n\s*answer\s*:\s*", re.IGNORECASE)
NUMBER = re.compile(r"^[-+\u2212]?[$\u20ac\u00a3]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?"
                    r"\s*(%|percent|[A-Za-z]+(\s[A-Za-z]+)?)?$")
NUMBER_WORDS = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
                "seventeen", "eighteen", "nineteen", "twenty"}
FUNCTION_WORDS = {"a", "an", "the", "of", "in", "on", "is", "are", "was", "were", "to", "for",
                  "and", "what", "which", "does", "do", "this", "that", "image", "chart", "shown"}
CHECK_NAMES = ["length", "choice", "numeric", "duplicate_exact", "duplicate_near"]


def normalise(text: str) -> str:
    """Lower case, punctuation dropped, spaces collapsed."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def content_words(text: str) -> frozenset[str]:
    """The normalised words of a question, function words left out."""
    words = normalise(text).split()
    return frozenset(word for word in words if word not in FUNCTION_WORDS) or frozenset(words)


def jaccard(first: frozenset, second: frozenset) -> float:
    """Shared share of two word sets."""
    return len(first & second) / len(first | second) if first or second else 1.0


def parse_options(question: str) -> dict[str, str] | None:
    """The options a question lists, letter -> text (letters A, B, ... for bare lists); or None."""
    header = OPTIONS_HEADER.search(question)
    if not header:
        return None
    listed = question[header.end():].strip()
    bracketed = re.match(r"^\[(.*?)\]", listed, re.DOTALL)
    if bracketed:
        texts = [part.strip().strip("'\"") for part in bracketed.group(1).split(",")]
    elif LETTERED_OPTION.search(listed):
        found = {letter: text.strip() for letter, text in LETTERED_OPTION.findall(listed)}
        return found if len(found) >= 2 else None
    else:
        first_line = listed.splitlines()[0] if listed else ""
        texts = [part.strip() for part in re.split(r"[,;]|\bor\b", first_line.rstrip(".?"))]
    texts = [text for text in texts if text]
    return {chr(ord("A") + i): text for i, text in enumerate(texts)} if len(texts) >= 2 else None


def answer_in_options(answer: str, options: dict[str, str]) -> bool:
    """True when the answer is an option's letter, its text, or 'letter. text'."""
    answer = ANSWER_LABEL.sub("", answer.strip()).strip().rstrip(".")
    letter_only = re.fullmatch(r"\(?([A-J])\)?", answer)
    if letter_only:
        return letter_only.group(1) in options
    texts = {normalise(text) for text in options.values()}
    if normalise(answer) in texts:
        return True
    lettered = re.fullmatch(r"\(?([A-J])[\.\):]\s*(.+)", answer, re.DOTALL)
    if not lettered:
        return False
    return normalise(lettered.group(2)) == normalise(options.get(lettered.group(1), ""))


def is_number(answer: str) -> bool:
    """True when the answer parses as a number (see the module docstring for the rule)."""
    answer = ANSWER_LABEL.sub("", answer.strip()).strip().rstrip(".")
    return bool(NUMBER.match(answer)) or answer.lower() in NUMBER_WORDS


def format_failure(question: str, answer: str, checks) -> str | None:
    """The first per-sample rule (length, choice, numeric) the Q/A breaks, or None."""
    bounds = [(question, checks.min_question_chars, checks.max_question_chars),
              (answer, checks.min_answer_chars, checks.max_answer_chars)]
    for text, low, high in bounds:
        if (low is not None and len(text) < low) or (high is not None and len(text) > high):
            return "length"
    answer = FINAL_ANSWER_LINE.split(answer)[-1]  # the rules below check the final answer
    options = parse_options(question) if (checks.choices or checks.numeric) else None
    if checks.choices and options and not answer_in_options(answer, options):
        return "choice"
    if (checks.numeric and not options
            and re.search(checks.numeric_question_pattern, question, re.IGNORECASE)
            and not is_number(answer)):
        return "numeric"
    return None


def apply_checks(samples: list[dict], checks) -> tuple[list[dict], dict[str, str]]:
    """Samples that pass every enabled check, and the failing rule per removed sample id."""
    kept, removed = [], {}
    seen_by_image: dict[str | None, list[tuple[str, frozenset]]] = defaultdict(list)
    for sample in samples:
        question, answer = prompt_and_answer(sample)
        failure = format_failure(question, answer, checks)
        seen = seen_by_image[sample.get("image_1")]
        key, words = normalise(question), content_words(question)
        if failure is None and checks.exact_duplicates and any(key == k for k, _ in seen):
            failure = "duplicate_exact"
        if failure is None and checks.near_duplicates is not None and any(
                jaccard(words, other) >= checks.near_duplicates for _, other in seen):
            failure = "duplicate_near"
        if failure:
            removed[str(sample["id"])] = failure
        else:
            seen.append((key, words))
            kept.append(sample)
    return kept, removed
