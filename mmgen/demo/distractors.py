"""Pool distractors: maps of named places, shape scenes, photo-like noise and tables.

Like the chart drawers, each takes a `random.Random` and returns `(image, truth entry)`.
"""
from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw

from mmgen.demo.charts import (
    CATEGORY_THEMES,
    COLORS,
    canvas,
    distinct_values,
    fitting_size,
    fmt,
    font,
)

PLACE_FIRST = ["Maple", "Cedar", "Silver", "Golden", "Old", "Sunny", "Blue", "River", "Hill",
               "Oak", "Pine", "Harbor", "Willow", "Stone", "Rose", "Iron"]
PLACE_SECOND = ["Cafe", "Library", "Bakery", "Museum", "Park", "School", "Market", "Tower",
                "Station", "Garden", "Theater", "Clinic", "Hotel", "Bridge", "Mill", "Farm"]
TOWNS = ["Millbrook", "Ashford", "Brightwater", "Dunmore", "Eastvale", "Fairhaven", "Glenrock",
         "Kingsport", "Lakeview", "Northwood"]
MAP_GROUNDS = [(236, 242, 220), (244, 238, 222), (230, 238, 240), (240, 240, 232)]
SHAPES = ("circle", "square", "triangle")
SHAPE_COLORS = ("red", "blue", "green", "gold", "purple", "orange")


def draw_map(rng: random.Random) -> tuple[Image.Image, dict]:
    """A town map with 4-8 named places; north is up, and no two places share a row or column."""
    town = rng.choice(TOWNS)
    image, draw, top = canvas(rng, f"Map of {town}")
    width, height = image.size
    draw.rectangle([4, top, width - 5, height - 5], fill=rng.choice(MAP_GROUNDS))
    # a river and two roads: scenery, not objects
    river = [(4, rng.uniform(top, height)), (width / 2, rng.uniform(top, height)),
             (width - 5, rng.uniform(top, height))]
    draw.line(river, fill=(150, 190, 230), width=6)
    for _ in range(2):
        x = rng.uniform(20, width - 20)
        draw.line([(x, top), (x + rng.uniform(-40, 40), height - 5)], fill=(205, 205, 205), width=3)
    # compass in the top-right corner
    draw.polygon([(width - 18, top + 6), (width - 23, top + 20), (width - 13, top + 20)],
                 fill=(40, 40, 40))
    draw.text((width - 18, top + 22), "N", fill=(40, 40, 40), font=font(10), anchor="ma")
    n = rng.randint(4, 8)
    names = rng.sample([f"{a} {b}" for a in PLACE_FIRST for b in PLACE_SECOND], n)
    # grid positions 0..100 in steps of 10: distinct columns and rows make every direction clear
    xs, ys = rng.sample(range(0, 101, 10), n), rng.sample(range(0, 101, 10), n)
    size = 10 if width >= 272 else 9
    objects = []
    for name, x, y in zip(names, xs, ys):
        px = 16 + (width - 60) * x / 100
        py = height - 14 - (height - top - 44) * y / 100
        color = COLORS[rng.choice(["red", "navy", "purple", "brown"])]
        draw.ellipse([px - 4, py - 4, px + 4, py + 4], fill=color, outline=(255, 255, 255))
        if x <= 50:
            draw.text((px + 7, py), name, fill=(20, 20, 20), font=font(size), anchor="lm")
        else:
            draw.text((px - 7, py), name, fill=(20, 20, 20), font=font(size), anchor="rm")
        objects.append({"name": name, "x": x, "y": y})
    return image, {"kind": "map", "title": f"Map of {town}", "data": {"objects": objects,
                                                                      "north": "up"}}


def draw_shapes(rng: random.Random) -> tuple[Image.Image, dict]:
    """3-9 non-overlapping coloured circles, squares and triangles on a plain background."""
    width, height = rng.choice(range(224, 321, 16)), rng.choice(range(224, 321, 16))
    ground = rng.choice([(255, 255, 255), (235, 235, 235), (250, 245, 230), (40, 40, 48)])
    image = Image.new("RGB", (width, height), ground)
    draw = ImageDraw.Draw(image)
    objects: list[dict] = []
    wanted = rng.randint(3, 9)
    for _ in range(400):  # rejection sampling; gives up on crowded scenes
        if len(objects) == wanted:
            break
        radius = rng.randint(12, 30)
        x, y = rng.randint(radius + 2, width - radius - 2), rng.randint(radius + 2, height - radius - 2)
        if any((x - o["x"]) ** 2 + (y - o["y"]) ** 2 < (radius + o["size"] + 6) ** 2
               for o in objects):
            continue
        shape, color = rng.choice(SHAPES), rng.choice(SHAPE_COLORS)
        box = [x - radius, y - radius, x + radius, y + radius]
        fill = COLORS[color]
        if shape == "circle":
            draw.ellipse(box, fill=fill)
        elif shape == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(x, y - radius), (x - radius, y + radius), (x + radius, y + radius)],
                         fill=fill)
        objects.append({"shape": shape, "color": color, "x": x, "y": y, "size": radius})
    return image, {"kind": "shapes", "title": "shapes scene", "data": {"objects": objects}}


def draw_noise(rng: random.Random) -> tuple[Image.Image, dict]:
    """A photo-like texture: soft blurred colour patches with film grain; no text, no chart."""
    width, height = rng.choice(range(224, 321, 16)), rng.choice(range(224, 321, 16))
    generator = np.random.default_rng(rng.getrandbits(64))
    cells = generator.integers(0, 256, size=(rng.randint(2, 6), rng.randint(2, 6), 3))
    image = Image.fromarray(cells.astype(np.uint8)).resize((width, height), Image.BICUBIC)
    grain = generator.normal(0, rng.uniform(6, 24), size=(height, width, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels), {"kind": "noise", "title": "photo-like noise",
                                     "data": {"grain": "fine", "patches": int(cells.shape[0]
                                                                              * cells.shape[1])}}


def draw_table(rng: random.Random) -> tuple[Image.Image, dict]:
    """A table with a header row, 3-8 named rows and two numeric year columns."""
    title, pool, (low, high), decimals = rng.choice(CATEGORY_THEMES)
    n = rng.randint(3, 8)
    labels = rng.sample(pool, n)
    year = rng.randint(2010, 2022)
    columns = ["Name", str(year), str(year + 1)]
    firsts = distinct_values(rng, n, low, high, decimals)
    seconds = distinct_values(rng, n, low, high, decimals)
    rows = [[label, a, b] for label, a, b in zip(labels, firsts, seconds)]
    image, draw, top = canvas(rng, title)
    width, height = image.size
    row_height = min(26, (height - top - 10) / (n + 1))
    size = fitting_size(labels + columns, width / 3 - 8, largest=min(12, int(row_height) - 4))
    header = rng.choice([(210, 225, 240), (225, 225, 225), (240, 225, 200)])
    x_edges = [8, width * 0.42, width * 0.71, width - 8]
    y = top + 4
    for index, cells in enumerate([columns] + [[r[0], fmt(r[1], decimals), fmt(r[2], decimals)]
                                               for r in rows]):
        if index == 0:
            draw.rectangle([x_edges[0], y, x_edges[-1], y + row_height], fill=header)
        for column, text in enumerate(cells):
            anchor_x = x_edges[column] + 5 if column == 0 else x_edges[column + 1] - 5
            draw.text((anchor_x, y + row_height / 2), text, fill=(20, 20, 20), font=font(size),
                      anchor="lm" if column == 0 else "rm")
        y += row_height
    for x in x_edges:
        draw.line([(x, top + 4), (x, y)], fill=(120, 120, 120))
    for i in range(n + 2):
        line_y = top + 4 + i * row_height
        draw.line([(x_edges[0], line_y), (x_edges[-1], line_y)], fill=(120, 120, 120))
    data = {"columns": columns, "rows": rows}
    return image, {"kind": "table", "title": title, "data": data}

