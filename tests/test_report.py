"""The report: one self-contained page, checked as a person would see it, in headless Chromium."""
from __future__ import annotations

import base64
import io
import re
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from curation_data import write_upstream
from helpers.run_if import chromium
from PIL import Image

from mmgen import runner
from mmgen.contracts import iter_jsonl, read_json

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


@pytest.fixture
def report_dir(make_config, curation_demo_root, tmp_path) -> Path:
    out = tmp_path / "out"
    write_upstream(out, curation_demo_root)
    cfg = make_config(f"dataset.root={curation_demo_root}", "report.gallery_per_subgroup=12",
                      out_dir=out)
    for stage in ("filter", "export", "report"):  # on the generated files write_upstream left
        runner.run(cfg, stage, alone=True)
    return out


@pytest.fixture
def browser() -> str:
    """Debian's Chromium: skipped with how to install it where missing, a failure in CI."""
    return chromium()


def browse(browser: str, page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def test_report_renders_in_chromium_with_one_card_per_gallery_sample(browser, report_dir, tmp_path):
    page = report_dir / "report.html"
    scores = [r for r in iter_jsonl(report_dir / "scores.jsonl") if r["score"] is not None]
    per_keyword = Counter(r["keyword"] for r in scores)
    expected_cards = sum(min(12, n) for n in per_keyword.values())
    assert expected_cards == 36  # 3 subgroups, each with more than 12 scored samples

    dom = browse(browser, page, tmp_path / "profile-dom", "--dump-dom").stdout
    gallery = dom[dom.index('id="gallery"'):]
    assert len(re.findall(r'<div class="card(?: kept)?">', gallery)) == expected_cards
    assert 0 < gallery.count('class="card kept"') < expected_cards  # both kinds shown
    assert dom.count("<details>") == expected_cards  # in-context examples on demand

    screenshot = tmp_path / "report.png"
    browse(browser, page, tmp_path / "profile-shot", f"--screenshot={screenshot}",
           "--window-size=1280,2400")
    pixels = np.asarray(Image.open(screenshot).convert("L"), dtype=np.float32)
    assert pixels.shape == (2400, 1280)
    assert pixels.std() > 20  # not a blank page
    gallery_band = pixels[1400:]  # thumbnails down the page differ from one another
    assert len(np.unique(gallery_band)) > 64


def test_report_is_self_contained_and_counts_the_funnel(report_dir):
    text = (report_dir / "report.html").read_text()
    assert not re.search(r'(src|href)="(?!data:)', text)  # nothing outside the page
    assert text.count("data:image/jpeg;base64,") >= 36
    assert "<svg" in text and "kept (" in text and "dropped (" in text
    funnel = text[text.index("Funnel per subgroup"):text.index("Failures by error class")]
    rows = {cells[0]: cells[1:] for cells in (
        re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in funnel.split("<tr")) if cells}
    # reference, candidates, prompts, ok, failed, samples, checks, kept
    assert rows["bar chart"][2:5] == ["8", "7", "1"]
    assert rows["total"][2] == "20" and rows["total"][4] == "3"
    stats = read_json(report_dir / "stats.json")
    assert rows["total"][7] == str(stats["filter"]["kept"])
    for error_class in ("rate_limit", "parse", "timeout"):
        assert f"<td class=text>{error_class}</td>" in text
    assert "$0.1234" in text and "18,000" in text  # cost from stats.json, tokens from the log


def test_thumbnail_of_a_16bit_image_shows_the_picture_not_white(tmp_path):
    from mmgen.report_sections import thumbnail

    ramp = np.tile(np.linspace(0, 1, 80), (40, 1))
    Image.fromarray((ramp * 65535).astype(np.uint16)).save(tmp_path / "ramp16.png")
    url = thumbnail(tmp_path / "ramp16.png", 40)
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    assert shown.shape == (20, 40, 3)
    assert shown[10, 1].max() < 30 and shown[10, -2].min() > 225  # dark left, white right
    assert thumbnail(tmp_path / "missing.png", 40) is None
