"""Pillow drawings of bar, pie and line charts with their ground truth.

Every drawer takes a `random.Random` and returns `(image, entry)` where `entry` is the truth
record `{"kind", "title", "data"}` stored in truth.json. Every number a question can ask about is
printed on the chart, so answers computed from `entry` are readable from the image.
Distractor drawers (map, shapes, noise, table) live in `mmgen.demo.distractors`; `mmgen.demo.kinds.draw`
draws any kind.
"""
from __future__ import annotations

import math
import random
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from mmgen.demo.describe import describe  # noqa: F401  (the teacher imports it from here)
from mmgen.demo.qa import fmt, make_qa  # noqa: F401

CHART_KINDS = ("bar", "pie", "line")
DISTRACTOR_KINDS = ("map", "shapes", "noise", "table")
KINDS = CHART_KINDS + DISTRACTOR_KINDS
# what a CLIP keyword calls each kind
KEYWORDS = {"bar": "bar chart", "pie": "pie chart", "line": "line chart", "map": "map",
            "shapes": "shapes", "noise": "noise", "table": "table"}

COLORS = {  # name -> RGB; names appear in descriptions and shape questions
    "blue": (52, 101, 164), "orange": (230, 126, 34), "green": (46, 139, 87),
    "red": (200, 50, 50), "purple": (128, 80, 160), "brown": (140, 90, 60),
    "teal": (0, 128, 128), "pink": (220, 110, 160), "gray": (110, 110, 110),
    "olive": (128, 128, 0), "navy": (30, 40, 110), "gold": (212, 160, 23),
}
BACKGROUNDS = [(255, 255, 255), (250, 250, 245), (245, 247, 250), (252, 248, 240)]

# (title, category labels, value range, decimals) for bar charts and tables
CATEGORY_THEMES = [
    ("Fruit harvest (tons)", ["Apples", "Pears", "Plums", "Cherries", "Grapes", "Peaches",
                              "Lemons", "Figs", "Kiwis"], (5, 95), 0),
    ("City population (millions)", ["Lagos", "Lima", "Oslo", "Cairo", "Delhi", "Paris",
                                    "Seoul", "Quito", "Dakar"], (1, 30), 1),
    ("Favourite sport (%)", ["Soccer", "Tennis", "Golf", "Rugby", "Hockey", "Cricket",
                             "Boxing", "Rowing"], (2, 60), 0),
    ("Revenue by region (USD bn)", ["North", "South", "East", "West", "Central", "Coast",
                                    "Islands", "Inland"], (10, 400), 0),
    ("Members per club", ["Chess", "Drama", "Choir", "Robots", "Art", "Debate", "Hiking",
                          "Film"], (8, 120), 0),
    ("Electricity by source (TWh)", ["Coal", "Gas", "Solar", "Wind", "Hydro", "Nuclear",
                                     "Biomass", "Oil"], (3, 250), 0),
    ("Average price (USD)", ["Bread", "Milk", "Eggs", "Rice", "Cheese", "Coffee", "Tea",
                             "Butter"], (1, 15), 1),
]
# (title, labels) for pie charts; values are whole percentages summing to 100
SHARE_THEMES = [
    ("Browser market share", ["Chrome", "Safari", "Edge", "Firefox", "Opera", "Brave",
                              "Vivaldi", "Other"]),
    ("Household budget", ["Housing", "Food", "Transport", "Health", "Leisure", "Savings",
                          "Clothing", "Other"]),
    ("Energy mix of a country", ["Coal", "Gas", "Solar", "Wind", "Hydro", "Nuclear", "Oil",
                                 "Other"]),
    ("Time spent on a weekday", ["Sleep", "Work", "Commute", "Meals", "Exercise", "Reading",
                                 "Screens", "Chores"]),
    ("Survey answers", ["Agree", "Disagree", "Neutral", "Unsure", "Strongly agree",
                        "No answer"]),
]
# (title, value range, decimals) for line charts over consecutive years or months
TREND_THEMES = [
    ("Unemployment rate (%)", (2, 15), 1), ("Museum visitors (thousands)", (20, 400), 0),
    ("Average rainfall (mm)", (10, 200), 0), ("Car sales (thousands)", (50, 900), 0),
    ("Share price (USD)", (5, 120), 1), ("Internet users (%)", (10, 95), 0),
    ("Air temperature (C)", (1, 35), 1),
]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
SERIES_NAMES = [("North", "South"), ("Men", "Women"), ("Online", "Stores"), ("City", "Rural")]


@lru_cache(maxsize=32)
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled scalable font at `size` px (no system fonts needed)."""
    return ImageFont.load_default(size=size)


def text_width(text: str, size: int) -> float:
    """Width in pixels of `text` at font `size`."""
    return font(size).getlength(text)


def fitting_size(texts: list[str], max_width: float, largest: int = 12, smallest: int = 8) -> int:
    """The largest font size at which every text fits in `max_width` pixels."""
    for size in range(largest, smallest - 1, -1):
        if all(text_width(text, size) <= max_width for text in texts):
            return size
    return smallest


def canvas(rng: random.Random, title: str) -> tuple[Image.Image, ImageDraw.ImageDraw, int]:
    """A blank image of a random size with a centred title; returns the title's bottom y."""
    width, height = rng.choice(range(224, 321, 16)), rng.choice(range(224, 321, 16))
    image = Image.new("RGB", (width, height), rng.choice(BACKGROUNDS))
    draw = ImageDraw.Draw(image)
    size = fitting_size([title], width - 12, largest=14, smallest=9)
    draw.text((width / 2, 6), title, fill=(20, 20, 20), font=font(size), anchor="ma")
    return image, draw, 10 + size


def distinct_values(rng: random.Random, n: int, low: float, high: float, decimals: int) -> list:
    """n distinct values in [low, high] rounded to `decimals` (distinct so max/min are unique)."""
    values: list = []
    while len(values) < n:
        value = round(rng.uniform(low, high), decimals) if decimals else rng.randint(low, high)
        if value not in values:
            values.append(value)
    return values


def draw_bar(rng: random.Random) -> tuple[Image.Image, dict]:
    """A vertical or horizontal bar chart with its value printed on every bar."""
    title, pool, (low, high), decimals = rng.choice(CATEGORY_THEMES)
    n = rng.randint(2, 8)
    labels = rng.sample(pool, n)
    values = distinct_values(rng, n, low, high, decimals)
    horizontal = n > 5 or rng.random() < 0.3
    colors = [rng.choice(list(COLORS))] * n if rng.random() < 0.6 else rng.sample(list(COLORS), n)
    image, draw, top = canvas(rng, title)
    width, height = image.size
    texts = [fmt(v, decimals) for v in values]
    peak = max(values)
    if horizontal:
        size = fitting_size(labels, width * 0.28, largest=11)
        left = 8 + max(text_width(label, size) for label in labels)
        right = width - 10 - max(text_width(t, size) for t in texts)
        slot = (height - top - 14) / n
        draw.line([(left, top + 4), (left, height - 10)], fill=(60, 60, 60))
        for i, (label, value, color) in enumerate(zip(labels, values, colors)):
            y0 = top + 6 + i * slot
            end = left + (right - left - 4) * value / peak
            draw.rectangle([left + 1, y0 + slot * 0.15, end, y0 + slot * 0.85], fill=COLORS[color])
            mid = y0 + slot / 2
            draw.text((left - 3, mid), label, fill=(30, 30, 30), font=font(size), anchor="rm")
            draw.text((end + 3, mid), texts[i], fill=(30, 30, 30), font=font(size), anchor="lm")
    else:
        slot = (width - 20) / n
        size = fitting_size(labels + texts, slot - 2, largest=12)
        base = height - 10 - size
        draw.line([(10, base), (width - 10, base)], fill=(60, 60, 60))
        for i, (label, value, color) in enumerate(zip(labels, values, colors)):
            x0 = 10 + i * slot
            bar_top = base - (base - top - size - 8) * value / peak
            draw.rectangle([x0 + slot * 0.18, bar_top, x0 + slot * 0.82, base - 1],
                           fill=COLORS[color])
            draw.text((x0 + slot / 2, bar_top - 2), texts[i], fill=(30, 30, 30), font=font(size),
                      anchor="md")
            draw.text((x0 + slot / 2, base + 2), label, fill=(30, 30, 30), font=font(size),
                      anchor="ma")
    data = {"labels": labels, "values": values, "orientation": "horizontal" if horizontal
            else "vertical", "colors": colors}
    return image, {"kind": "bar", "title": title, "data": data}


def draw_pie(rng: random.Random) -> tuple[Image.Image, dict]:
    """A pie chart with a legend giving every slice's whole percentage."""
    title, pool = rng.choice(SHARE_THEMES)
    n = rng.randint(2, min(8, len(pool)))
    labels = rng.sample(pool, n)
    while True:  # distinct whole percentages, each >= 3, summing to 100
        cuts = sorted(rng.sample(range(3, 98), n - 1))
        values = [b - a for a, b in zip([0] + cuts, cuts + [100])]
        if min(values) >= 3 and len(set(values)) == n:
            break
    colors = rng.sample(list(COLORS), n)
    image, draw, top = canvas(rng, title)
    width, height = image.size
    legend = [f"{label} {value}%" for label, value in zip(labels, values)]
    size = fitting_size(legend, width * 0.42, largest=11)
    legend_width = max(text_width(t, size) for t in legend) + 16
    diameter = min(width - legend_width - 20, height - top - 12)
    cx, cy = 8 + diameter / 2, top + 4 + (height - top - 4) / 2
    box = [cx - diameter / 2, cy - diameter / 2, cx + diameter / 2, cy + diameter / 2]
    start = rng.uniform(0, 360)
    for value, color, label in zip(values, colors, labels):
        sweep = 360 * value / 100
        draw.pieslice(box, start, start + sweep, fill=COLORS[color], outline=(255, 255, 255))
        if value >= 8:  # only big slices have room for their number
            angle = math.radians(start + sweep / 2)
            point = (cx + diameter * 0.32 * math.cos(angle), cy + diameter * 0.32 * math.sin(angle))
            draw.text(point, f"{value}%", fill=(255, 255, 255), font=font(size), anchor="mm")
        start += sweep
    step = min(size + 6, (height - top - 10) / n)
    y = cy - step * n / 2
    x = width - legend_width - 4
    for text, color in zip(legend, colors):
        draw.rectangle([x, y + 2, x + 9, y + 11], fill=COLORS[color])
        draw.text((x + 13, y), text, fill=(30, 30, 30), font=font(size))
        y += step
    data = {"labels": labels, "values": values, "unit": "%", "colors": colors}
    return image, {"kind": "pie", "title": title, "data": data}


def draw_line(rng: random.Random) -> tuple[Image.Image, dict]:
    """A line chart over consecutive years or months, one or two series, points labelled."""
    title, (low, high), decimals = rng.choice(TREND_THEMES)
    n = rng.randint(4, 8)
    if rng.random() < 0.5:
        first = rng.randint(1995, 2016)
        labels, axis = [str(year) for year in range(first, first + n)], "year"
    else:
        first = rng.randint(0, 12 - n)
        labels, axis = MONTHS[first:first + n], "month"
    names = rng.choice(SERIES_NAMES) if rng.random() < 0.3 else (None,)
    series = [distinct_values(rng, n, low, high, decimals) for _ in names]
    colors = rng.sample(["blue", "orange", "green", "red", "purple"], len(names))
    image, draw, top = canvas(rng, title)
    width, height = image.size
    size = fitting_size(labels, (width - 40) / n - 2, largest=11)
    if names[0]:  # legend under the title
        x = 34
        for name, color in zip(names, colors):
            draw.line([(x, top + 6), (x + 14, top + 6)], fill=COLORS[color], width=3)
            draw.text((x + 18, top + 6), name, fill=(30, 30, 30), font=font(size), anchor="lm")
            x += 30 + text_width(name, size)
        top += size + 4
    left, right, base = 30, width - 12, height - 8 - size
    peak = max(max(values) for values in series) * 1.15
    for tick in range(5):  # gridlines with round tick numbers
        tick_value = peak * tick / 4
        y = base - (base - top - size - 6) * tick / 4
        draw.line([(left, y), (right, y)], fill=(225, 225, 225))
        draw.text((left - 3, y), fmt(tick_value, 0), fill=(90, 90, 90), font=font(8), anchor="rm")
    draw.line([(left, base), (right, base)], fill=(60, 60, 60))
    step = (right - left) / n
    xs = [left + step * (i + 0.5) for i in range(n)]
    for x, label in zip(xs, labels):
        draw.text((x, base + 3), label, fill=(30, 30, 30), font=font(size), anchor="ma")
    lines = [[(x, base - (base - top - size - 6) * v / peak) for x, v in zip(xs, values)]
             for values in series]
    for points, color in zip(lines, colors):
        draw.line(points, fill=COLORS[color], width=2)
        for x, y in points:
            draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=COLORS[color])
    background = image.getpixel((0, 0))
    for index, (points, values, color) in enumerate(zip(lines, series, colors)):
        for i, ((x, y), value) in enumerate(zip(points, values)):
            # with two series the lower point (or the second of a tie) is labelled below
            highest = max(range(len(series)), key=lambda k: series[k][i])
            below = index != highest and y + 4 + size < base
            draw.text((x, y + 4 if below else y - 4), fmt(value, decimals), fill=COLORS[color],
                      font=font(size), anchor="ma" if below else "md", stroke_width=2,
                      stroke_fill=background)
    data = {"labels": labels, "values": series[0], "axis": axis, "colors": colors}
    if names[0]:
        data["series"] = [{"name": name, "values": values} for name, values in zip(names, series)]
    return image, {"kind": "line", "title": title, "data": data}
