"""Truthful, detailed descriptions of demo images, written from their truth entries."""
from __future__ import annotations

from collections import Counter

from mmgen.demo.qa import decimals_of, fmt


def _listing(labels: list[str], values: list, unit: str = "") -> str:
    places = decimals_of(values)
    return ", ".join(f"{label} {fmt(value, places)}{unit}" for label, value in zip(labels, values))


def _colours(colors: list[str]) -> str:
    return f"all in {colors[0]}" if len(set(colors)) == 1 else "each in its own colour"


def _bar(entry: dict) -> str:
    data = entry["data"]
    labels, values = data["labels"], data["values"]
    high, low = max(zip(values, labels)), min(zip(values, labels))
    places = decimals_of(values)
    where = "at the end of each bar" if data.get("orientation") == "horizontal" else "above each bar"
    return (f"A {data.get('orientation', 'vertical')} bar chart titled \"{entry['title']}\" with "
            f"{len(labels)} bars, {_colours(data.get('colors', ['blue']))}. The value is printed "
            f"{where}: {_listing(labels, values)}. The highest bar is {high[1]} "
            f"({fmt(high[0], places)}) and the lowest is {low[1]} ({fmt(low[0], places)}).")


def _pie(entry: dict) -> str:
    data = entry["data"]
    labels, values = data["labels"], data["values"]
    colors = data.get("colors") or [""] * len(labels)
    legend = ", ".join(f"{label} {value}% ({color})".replace(" ()", "")
                       for label, value, color in zip(labels, values, colors))
    high, low = max(zip(values, labels)), min(zip(values, labels))
    return (f"A pie chart titled \"{entry['title']}\" with {len(labels)} slices that add up to "
            f"100%. A legend beside the pie lists every slice with its share: {legend}. The "
            f"largest slice is {high[1]} at {high[0]}% and the smallest is {low[1]} at {low[0]}%; "
            "the bigger slices also carry their percentage inside the pie.")


def _line(entry: dict) -> str:
    data = entry["data"]
    labels, axis = data["labels"], data.get("axis", "point")
    series = data.get("series") or [{"name": None, "values": data["values"]}]
    places = decimals_of([v for s in series for v in s["values"]])
    parts = [(f"A line chart titled \"{entry['title']}\" over {len(labels)} {axis}s, from "
              f"{labels[0]} to {labels[-1]}, with light gridlines and the value printed at every "
              "point.")]
    if len(series) > 1:
        parts.append(f"It has {len(series)} series named in a legend: "
                     f"{' and '.join(s['name'] for s in series)}.")
    for s in series:
        values = s["values"]
        name = f"The {s['name']} series" if s["name"] else "The line"
        trend = "higher" if values[-1] > values[0] else "lower"
        peak = max(zip(values, labels))
        parts.append(f"{name} reads {_listing(labels, values)}; it ends {trend} than it starts "
                     f"and peaks at {fmt(peak[0], places)} in {peak[1]}.")
    return " ".join(parts)


def _region(place: dict) -> str:
    north_south = "north" if place["y"] > 65 else "south" if place["y"] < 35 else ""
    east_west = "east" if place["x"] > 65 else "west" if place["x"] < 35 else ""
    return f"{north_south}{'-' if north_south and east_west else ''}{east_west}" or "centre"


def _map(entry: dict) -> str:
    objects = entry["data"]["objects"]
    places = "; ".join(f"{o['name']} in the {_region(o)}" for o in objects)
    north = max(objects, key=lambda o: o["y"])["name"]
    south = min(objects, key=lambda o: o["y"])["name"]
    return (f"A map titled \"{entry['title']}\" with north at the top (a compass arrow marks N). "
            f"A river and roads cross it as scenery. {len(objects)} named places are marked with "
            f"dots: {places}. {north} is the furthest north and {south} the furthest south.")


def _shapes(entry: dict) -> str:
    objects = entry["data"]["objects"]
    counts = Counter(f"{o['color']} {o['shape']}" for o in objects)
    listed = ", ".join(f"{n} {name}{'s' if n > 1 else ''}" for name, n in sorted(counts.items()))
    return (f"A plain background with {len(objects)} separate flat shapes and no text: {listed}.")


def _noise(entry: dict) -> str:
    return ("A photo-like texture of soft, blurred colour patches covered in fine grain. It has no "
            "chart, axes, text, numbers or distinct objects.")


def _table(entry: dict) -> str:
    columns, rows = entry["data"]["columns"], entry["data"]["rows"]
    places = decimals_of([v for row in rows for v in row[1:]])
    listed = "; ".join(f"{r[0]}: {fmt(r[1], places)} in {columns[1]}, {fmt(r[2], places)} in "
                       f"{columns[2]}" for r in rows)
    return (f"A table titled \"{entry['title']}\" with a shaded header row ({', '.join(columns)}) "
            f"and {len(rows)} data rows: {listed}.")


def describe(entry: dict) -> str:
    """A truthful, detailed description of one demo image from its truth entry."""
    writers = {"bar": _bar, "pie": _pie, "line": _line, "map": _map, "shapes": _shapes,
               "noise": _noise, "table": _table}
    if entry.get("kind") not in writers:
        raise ValueError(f"truth entry has unknown kind {entry.get('kind')!r}")
    return writers[entry["kind"]](entry)
