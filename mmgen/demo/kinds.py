"""Every demo image kind, charts and distractors, behind one `draw`."""
from __future__ import annotations

import random

from PIL import Image

from mmgen.demo.charts import KINDS, draw_bar, draw_line, draw_pie
from mmgen.demo.distractors import draw_map, draw_noise, draw_shapes, draw_table

DRAWERS = {"bar": draw_bar, "pie": draw_pie, "line": draw_line, "map": draw_map,
           "shapes": draw_shapes, "noise": draw_noise, "table": draw_table}


def draw(kind: str, rng: random.Random) -> tuple[Image.Image, dict]:
    """Draw one image of `kind` (a chart or a distractor) and its truth entry."""
    if kind not in DRAWERS:
        raise ValueError(f"unknown demo image kind {kind!r}; expected one of {', '.join(KINDS)}")
    return DRAWERS[kind](rng)
