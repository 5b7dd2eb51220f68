"""Truthful questions, answers and descriptions computed from a demo image's truth entry.

`make_qa(entry, rng, n)` returns n `{"Q", "A", "R"}` items in ChartQA styles (value lookup,
largest/smallest, difference, sum, ratio, count, trend) and simple map/table/shape questions;
`R` is a short step-by-step reasoning ending with the answer. Deterministic given `rng`; the
demo teacher answers with it (through `mmgen.demo.charts`).
"""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

Item = dict[str, str]


def fmt(value: float, decimals: int) -> str:
    """A data value exactly as the chart prints it."""
    return f"{value:.{decimals}f}" if decimals else str(round(value))


def plain(value: float) -> str:
    """A derived number (average, ratio) with at most two decimals and no trailing zeros."""
    text = f"{round(value, 2):.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def decimals_of(values: list) -> int:
    """1 if the values are printed with one decimal (stored as floats), else 0."""
    return 1 if any(isinstance(value, float) for value in values) else 0


def item(question: str, answer: str, *steps: str) -> Item:
    """One Q/A/R item; the reasoning ends by stating the answer."""
    return {"Q": question, "A": answer, "R": " ".join(steps + (f"So the answer is {answer}.",))}


def _categorical(labels: list[str], values: list, noun: str, kind: str) -> list[Callable]:
    """Question styles over named values (bars, pie slices, one table column)."""
    places = decimals_of(values)
    pairs = dict(zip(labels, values))
    unit = "%" if kind == "pie" else ""
    shown = ", ".join(f"{label} = {fmt(value, places)}{unit}" for label, value in pairs.items())
    read = f"Reading the chart: {shown}."

    def lookup(rng):
        label = rng.choice(labels)
        question = (f"What percentage of the pie does {label} account for?" if kind == "pie"
                    else f"What is the value of {label} in the chart?")
        return item(question, fmt(pairs[label], places),
                    f"Find the {noun} labelled {label}; its number is "
                    f"{fmt(pairs[label], places)}{unit}.")

    def extreme(rng):
        highest = rng.random() < 0.5
        label = (max if highest else min)(labels, key=pairs.get)
        word = "highest" if highest else "lowest"
        return item(f"Which {noun} has the {word} value?", label, read,
                    f"The {word} of these is {fmt(pairs[label], places)}{unit}, for {label}.")

    def two_labels(rng):
        return rng.sample(labels, 2)

    def difference(rng):
        a, b = two_labels(rng)
        gap = round(abs(pairs[a] - pairs[b]), places)
        return item(f"What is the difference between {a} and {b}?", fmt(gap, places),
                    f"{a} is {fmt(pairs[a], places)}{unit} and {b} is "
                    f"{fmt(pairs[b], places)}{unit}.", f"The difference is {fmt(gap, places)}.")

    def total(rng):
        a, b = two_labels(rng)
        both = round(pairs[a] + pairs[b], places)
        return item(f"What is the sum of {a} and {b}?", fmt(both, places),
                    f"{a} is {fmt(pairs[a], places)} and {b} is {fmt(pairs[b], places)}.",
                    f"{fmt(pairs[a], places)} + {fmt(pairs[b], places)} = {fmt(both, places)}.")

    def ratio(rng):
        a, b = two_labels(rng)
        value = plain(pairs[a] / pairs[b])
        return item(f"What is the ratio of {a} to {b}?", value,
                    f"{a} is {fmt(pairs[a], places)} and {b} is {fmt(pairs[b], places)}.",
                    f"{fmt(pairs[a], places)} / {fmt(pairs[b], places)} = {value} (rounded).")

    def count(rng):
        return item(f"How many {noun}s does the chart have?", str(len(labels)),
                    f"Counting the labelled {noun}s: {', '.join(labels)}.",
                    f"That is {len(labels)} {noun}s.")

    def compare(rng):
        a, b = two_labels(rng)
        answer = "Yes" if pairs[a] > pairs[b] else "No"
        return item(f"Is the value of {a} greater than that of {b}?", answer,
                    f"{a} is {fmt(pairs[a], places)}{unit} and {b} is "
                    f"{fmt(pairs[b], places)}{unit}.")

    def average(rng):
        mean = plain(sum(values) / len(values))
        return item(f"What is the average value across all {noun}s?", mean, read,
                    f"The sum is {fmt(round(sum(values), places), places)}; divided by "
                    f"{len(values)} that is {mean}.")

    def second(rng):
        label = sorted(labels, key=pairs.get, reverse=True)[1]
        return item(f"Which {noun} has the second highest value?", label, read,
                    f"Sorted from high to low, {label} ({fmt(pairs[label], places)}{unit}) "
                    "comes second.")

    styles = [lookup, extreme, difference, total, ratio, count, compare]
    styles += [second] if len(labels) >= 3 else []
    styles += [] if kind == "pie" else [average]
    return styles


def _line(data: dict) -> list[Callable]:
    """Question styles for line charts, naming the series when there are two."""
    labels, axis = data["labels"], data.get("axis", "point")
    series = data.get("series") or [{"name": None, "values": data["values"]}]
    places = decimals_of([v for s in series for v in s["values"]])

    def pick(rng):
        chosen = rng.choice(series)
        subject = f"the {chosen['name']} series" if chosen["name"] else "the value"
        return dict(zip(labels, chosen["values"])), subject, chosen["values"]

    def lookup(rng):
        pairs, subject, _ = pick(rng)
        label = rng.choice(labels)
        return item(f"What was {subject} in {label}?", fmt(pairs[label], places),
                    f"Find {label} on the x-axis and follow {subject} up to its point.",
                    f"The point is labelled {fmt(pairs[label], places)}.")

    def peak(rng):
        pairs, subject, _ = pick(rng)
        highest = rng.random() < 0.5
        label = (max if highest else min)(labels, key=pairs.get)
        word = "highest" if highest else "lowest"
        shown = ", ".join(f"{k}: {fmt(v, places)}" for k, v in pairs.items())
        return item(f"In which {axis} was {subject} {word}?", label, f"The points are {shown}.",
                    f"The {word} is {fmt(pairs[label], places)} in {label}.")

    def change(rng):
        pairs, subject, _ = pick(rng)
        a, b = sorted(rng.sample(labels, 2), key=labels.index)
        direction = "increase" if pairs[b] > pairs[a] else "decrease"
        return item(f"Did {subject} increase or decrease from {a} to {b}?", direction.capitalize(),
                    f"In {a} it was {fmt(pairs[a], places)} and in {b} it was "
                    f"{fmt(pairs[b], places)}.", f"So it went {'up' if direction == 'increase' else 'down'}.")

    def difference(rng):
        pairs, subject, _ = pick(rng)
        a, b = sorted(rng.sample(labels, 2), key=labels.index)
        gap = round(abs(pairs[b] - pairs[a]), places)
        return item(f"By how much did {subject} differ between {a} and {b}?", fmt(gap, places),
                    f"In {a} it was {fmt(pairs[a], places)}; in {b} it was "
                    f"{fmt(pairs[b], places)}.", f"The difference is {fmt(gap, places)}.")

    def count(rng):
        return item(f"How many {axis}s are shown on the x-axis?", str(len(labels)),
                    f"The x-axis runs from {labels[0]} to {labels[-1]}: {', '.join(labels)}.",
                    f"That is {len(labels)} {axis}s.")

    def biggest_rise(rng):
        _, subject, values = pick(rng)
        rises = [values[i + 1] - values[i] for i in range(len(values) - 1)]
        best = max(rises)
        if best <= 0 or rises.count(best) > 1:
            return None
        i = rises.index(best)
        answer = f"{labels[i]} and {labels[i + 1]}"
        return item(f"Between which two consecutive {axis}s did {subject} rise the most?", answer,
                    f"The largest step up is from {fmt(values[i], places)} in {labels[i]} to "
                    f"{fmt(values[i + 1], places)} in {labels[i + 1]}, "
                    f"a rise of {fmt(round(best, places), places)}.")

    def which_series(rng):
        label = rng.choice(labels)
        at = {s["name"]: dict(zip(labels, s["values"]))[label] for s in series}
        winner = max(at, key=at.get)
        if list(at.values()).count(at[winner]) > 1:
            return None  # a tie has no higher series
        shown = " and ".join(f"{name} is {fmt(value, places)}" for name, value in at.items())
        return item(f"In {label}, which series had the higher value?", winner,
                    f"In {label}, {shown}.")

    styles = [lookup, peak, change, difference, count, biggest_rise]
    return styles + ([which_series] if len(series) > 1 else [])


def _direction(a: dict, b: dict) -> str:
    """Where `a` lies from `b` on a north-up map (rows and columns are always distinct)."""
    return ("North" if a["y"] > b["y"] else "South") + ("east" if a["x"] > b["x"] else "west")


def _map(data: dict) -> list[Callable]:
    """Question styles about named places on a north-up map."""
    objects = data["objects"]

    def direction(rng):
        a, b = rng.sample(objects, 2)
        answer = _direction(a, b)
        return item(f"In which direction is {a['name']} from {b['name']}?", answer,
                    f"On the map (north is up) {a['name']} is "
                    f"{'above' if a['y'] > b['y'] else 'below'} and "
                    f"{'right' if a['x'] > b['x'] else 'left'} of {b['name']}.")

    def count_direction(rng):
        b = rng.choice(objects)
        way = rng.choice(["Northeast", "Northwest", "Southeast", "Southwest"])
        hits = [o["name"] for o in objects if o is not b and _direction(o, b) == way]
        listed = ", ".join(hits) if hits else "none"
        return item(f"How many places are to the {way} of {b['name']}?", str(len(hits)),
                    f"Places both {way[:5].lower()} and {way[5:]} of {b['name']}: {listed}.")

    def count(rng):
        return item("How many named places are on the map?", str(len(objects)),
                    f"The labelled places are {', '.join(o['name'] for o in objects)}.")

    def furthest(rng):
        way, axis, sign = rng.choice([("north", "y", 1), ("south", "y", -1), ("east", "x", 1),
                                      ("west", "x", -1)])
        best = max(objects, key=lambda o: sign * o[axis])
        return item(f"Which place is furthest {way}?", best["name"],
                    f"Compare the places' positions; with north up, {best['name']} lies furthest "
                    f"{way}.")

    return [direction, count_direction, count, furthest]


def _shapes(data: dict) -> list[Callable]:
    """Counting questions about a shapes scene."""
    objects = data["objects"]

    def total(rng):
        return item("How many shapes are in the image?", str(len(objects)),
                    f"Counting every circle, square and triangle gives {len(objects)}.")

    def by_attribute(rng):
        key = rng.choice(["shape", "color"])
        value = rng.choice([o[key] for o in objects])
        hits = sum(o[key] == value for o in objects)
        noun = f"{value}s" if key == "shape" else f"{value} shapes"
        return item(f"How many {noun} are there?", str(hits),
                    f"Look at each of the {len(objects)} shapes and count the {noun}: {hits}.")

    def most_common(rng):
        counts = Counter(o["shape"] for o in objects).most_common()
        if len(counts) > 1 and counts[0][1] == counts[1][1]:
            return None
        listed = ", ".join(f"{n} {s}{'s' if n > 1 else ''}" for s, n in counts)
        return item("Which kind of shape appears most often?", counts[0][0], f"There are {listed}.")

    return [total, by_attribute, most_common]


def _table(entry: dict) -> list[Callable]:
    """Lookup and counting questions about a two-year table."""
    columns, rows = entry["data"]["columns"], entry["data"]["rows"]
    places = decimals_of([v for row in rows for v in row[1:]])

    def count(rng):
        return item("How many data rows does the table have, not counting the header?",
                    str(len(rows)), f"The rows are {', '.join(r[0] for r in rows)}.")

    def lookup(rng):
        row, column = rng.choice(rows), rng.randint(1, 2)
        return item(f"What is the {columns[column]} value for {row[0]}?",
                    fmt(row[column], places),
                    f"Go to the {row[0]} row and the {columns[column]} column.")

    def highest(rng):
        column = rng.randint(1, 2)
        best = max(rows, key=lambda r: r[column])
        return item(f"Which row has the highest value in {columns[column]}?", best[0],
                    f"The largest number in the {columns[column]} column is "
                    f"{fmt(best[column], places)}, in the {best[0]} row.")

    def change(rng):
        row = rng.choice(rows)
        if row[1] == row[2]:
            return None
        answer = "Increase" if row[2] > row[1] else "Decrease"
        return item(f"Did {row[0]} increase or decrease from {columns[1]} to {columns[2]}?",
                    answer, f"{row[0]} went from {fmt(row[1], places)} to {fmt(row[2], places)}.")

    return [count, lookup, highest, change]


def _noise(entry: dict) -> list[Callable]:
    """Honest questions about an image that holds no chart."""
    return [
        lambda rng: item("Does this image contain a chart?", "No",
                         "The image shows only soft colour patches and grain, with no axes, bars, "
                         "slices or labels."),
        lambda rng: item("Is there any readable text in the image?", "No",
                         "No letters or numbers are visible anywhere in the image."),
        lambda rng: item("What kind of image is this?", "A blurry photo-like texture",
                         "There are smooth colour blobs with grain and no objects or text."),
    ]


def styles_for(entry: dict) -> list[Callable]:
    """The question styles that apply to one truth entry."""
    kind, data = entry["kind"], entry["data"]
    if kind in ("bar", "pie"):
        return _categorical(data["labels"], data["values"], "bar" if kind == "bar" else "slice",
                            kind)
    makers = {"line": lambda: _line(data), "map": lambda: _map(data),
              "shapes": lambda: _shapes(data), "table": lambda: _table(entry),
              "noise": lambda: _noise(entry)}
    if kind not in makers:
        raise ValueError(f"truth entry has unknown kind {kind!r}")
    return makers[kind]()


def make_qa(entry: dict, rng: random.Random, n: int) -> list[Item]:
    """n truthful Q/A/R items for one truth entry, distinct questions first, styles mixed."""
    styles = styles_for(entry)
    items: list[Item] = []
    seen: set[str] = set()
    order: list[Callable] = []
    for attempt in range(40 * n):
        if not order:
            order = styles[:]
            rng.shuffle(order)
        made = order.pop()(rng)
        if made and (made["Q"] not in seen or attempt >= 20 * n):  # repeat only if exhausted
            seen.add(made["Q"])
            items.append(made)
            if len(items) == n:
                break
    return items

