"""Unit tests of the generation engine's parts: images, token estimates, reply parsing, error
classes, backoff, rate limits and budget."""
from __future__ import annotations

import asyncio
import base64
import io
import random
import time

import httpx2
import numpy as np
import openai
import pytest
from PIL import Image

from mmgen.vlm.cost import Prices, image_tokens
from mmgen.vlm.errors import FatalBackendError, classify, parse_retry_after, retry_delay
from mmgen.vlm.images import ImageEncoder, ImageError
from mmgen.vlm.limits import Budget, RateLimiter
from mmgen.vlm.messages import ReplyFormatError, build_messages, format_fix_messages, parse_items

QA_MODE = {"reply_keys": ["Q", "A"]}


def decode(url: str) -> Image.Image:
    header, _, payload = url.partition(",")
    assert header in ("data:image/jpeg;base64", "data:image/png;base64")
    return Image.open(io.BytesIO(base64.b64decode(payload)))


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "CMYK", "LA", "I;16"])
@pytest.mark.parametrize("image_format", ["jpeg", "png"])
def test_every_image_mode_becomes_a_downscaled_rgb_data_url(tmp_path, mode, image_format):
    image = Image.new("RGB", (600, 300), (200, 30, 30)).convert(mode)
    suffix = "tiff" if mode in ("CMYK", "I;16") else "png"
    image.save(tmp_path / f"chart.{suffix}")
    encoder = ImageEncoder(tmp_path, max_side=200, image_format=image_format, detail="low")
    encoded = encoder.encode(f"chart.{suffix}")
    decoded = decode(encoded.url)
    assert decoded.mode == "RGB" and decoded.size == (200, 100)
    assert (encoded.width, encoded.height, encoded.tokens) == (200, 100, 85)


def test_transparent_pixels_are_flattened_onto_white(tmp_path):
    Image.new("RGBA", (20, 20), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    pixel = decode(ImageEncoder(tmp_path, image_format="png").encode("clear.png").url).getpixel((5, 5))
    assert pixel == (255, 255, 255)


def test_images_are_encoded_once_and_reused(tmp_path):
    for name in ("a.png", "b.png"):
        Image.new("RGB", (64, 64), "blue").save(tmp_path / name)
    encoder = ImageEncoder(tmp_path, cache_size=8)
    first = [encoder.encode("a.png") for _ in range(5)] + [encoder.encode("b.png")]
    assert encoder.encoded == 2 and first[0] is first[4]
    assert encoder.cached("a.png") is first[0] and encoder.cached("missing.png") is None


def test_unreadable_image_names_its_path(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    encoder = ImageEncoder(tmp_path)
    with pytest.raises(ImageError, match=r"image 'broken.png' .*could not be read"):
        encoder.encode("broken.png")
    with pytest.raises(ImageError, match="missing.png"):
        encoder.measure("missing.png")


def test_image_tokens_follow_detail_and_tiling():
    assert image_tokens(4000, 3000, "low") == 85
    assert image_tokens(512, 512, "high") == 85 + 170 * 1
    assert image_tokens(1024, 1024, "high") == 85 + 170 * 4  # scaled to 768 x 768: 2 x 2 tiles
    assert image_tokens(2048, 4096, "auto") == 85 + 170 * 6  # 1024x2048 -> 768x1536: 2 x 3


def test_messages_keep_part_order_and_detail(tmp_path):
    Image.new("RGB", (64, 64), "blue").save(tmp_path / "a.png")
    prompt = {"system": "sys", "content": [{"type": "text", "text": "look"},
                                           {"type": "image", "path": "a.png"}]}
    image = ImageEncoder(tmp_path).encode("a.png")
    messages = build_messages(prompt, [image], "high")
    assert messages[0] == {"role": "system", "content": "sys"}
    parts = messages[1]["content"]
    assert parts[0] == {"type": "text", "text": "look"}
    assert parts[1]["image_url"] == {"url": image.url, "detail": "high"}


@pytest.mark.parametrize("reply", [
    '[{"Q": "q", "A": "a"}]',
    '```json\n[{"Q": "q", "A": "a"}]\n```',
    'Sure! Here they are:\n[{"Q": "q", "A": "a"}]\nAnything else?',
    '{"items": [{"Q": "q", "A": "a"}]}',
])
def test_replies_in_common_wrappings_parse(reply):
    assert parse_items(reply, QA_MODE, 1) == ([{"Q": "q", "A": "a"}], 1)


@pytest.mark.parametrize("reply, problem", [
    ("[{'Q': 'q', 'A': 'a'}]", "not valid JSON"),
    ('[{"Q": "q", "A": "a"', "not valid JSON"),
    ('[{"Q": "q"}]', 'missing key "A"'),
    ('[{"Q": "q", "A": 3}]', "expected a string"),
    ("[]", "empty list"),
    ("", "empty"),
    (None, "empty"),
])
def test_bad_replies_say_what_is_wrong(reply, problem):
    with pytest.raises(ReplyFormatError, match=problem):
        parse_items(reply, QA_MODE, 1)


def test_extra_items_are_dropped_and_fewer_kept():
    three = '[{"Q": "1", "A": "1"}, {"Q": "2", "A": "2"}, {"Q": "3", "A": "3"}]'
    items, received = parse_items(three, QA_MODE, 2)
    assert received == 3 and [item["Q"] for item in items] == ["1", "2"]
    items, received = parse_items(three, QA_MODE, 5)
    assert received == 3 and len(items) == 3


def test_format_fix_turn_repeats_the_reply_format():
    original = [{"role": "user", "content": "hi"}]
    fixed = format_fix_messages(original, "oops", "the reply is not valid JSON", ["Q", "A"], 3)
    assert fixed[:1] == original and fixed[1] == {"role": "assistant", "content": "oops"}
    assert "the reply is not valid JSON" in fixed[2]["content"]
    assert 'Reply with only a JSON list of 3 objects with the keys "Q", "A".' in fixed[2]["content"]


def status_error(status: int, headers: dict | None = None) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx2.Response(status, headers=headers or {}, request=request)
    cls = {429: openai.RateLimitError, 400: openai.BadRequestError,
           401: openai.AuthenticationError}.get(status, openai.InternalServerError)
    return cls("boom", response=response, body=None)


def test_errors_are_classified():
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    limited = classify(status_error(429, {"retry-after": "7"}))
    assert (limited.error_class, limited.retry_after, limited.retryable) == ("rate_limit", 7.0, True)
    assert classify(status_error(503)).error_class == "server"
    assert classify(status_error(400)).error_class == "bad_request"
    assert not classify(status_error(400)).retryable
    assert classify(openai.APITimeoutError(request)).error_class == "timeout"
    assert classify(asyncio.TimeoutError()).error_class == "timeout"
    assert classify(openai.APIConnectionError(request=request)).error_class == "connection"
    assert classify(ValueError("bad json")).error_class == "server"
    with pytest.raises(FatalBackendError, match="API key was refused"):
        classify(status_error(401))


def test_retry_after_and_backoff():
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({}) is None
    rng = random.Random(0)
    delays = [retry_delay(attempt, 1.0, 60.0, None, rng) for attempt in range(1, 8)]
    assert all(0.5 * min(60, 2 ** (a - 1)) <= d <= min(60, 2 ** (a - 1))
               for a, d in enumerate(delays, start=1))
    assert retry_delay(1, 1.0, 60.0, 30.0, rng) == 30.0  # Retry-After wins when longer


def test_rpm_limit_spaces_requests():
    async def go() -> float:
        limiter = RateLimiter(rpm=600, tpm=None)  # 10 per second, 10 of burst
        started = time.perf_counter()
        for _ in range(25):
            await limiter.acquire(100)
        return time.perf_counter() - started
    assert 1.3 <= asyncio.run(go()) <= 3.0  # 10 at once, then 15 more at 10/s


def test_tpm_limit_counts_tokens():
    async def go() -> float:
        limiter = RateLimiter(rpm=None, tpm=60_000)  # 1000 tokens per second
        started = time.perf_counter()
        for _ in range(4):
            await limiter.acquire(500)
        return time.perf_counter() - started
    assert 0.8 <= asyncio.run(go()) <= 2.0  # 1000 at once, then 1000 more at 1000/s


def test_budget_refuses_once_reached():
    budget = Budget(Prices(1e6, 0.0), max_cost_usd=2.5, spent_usd=1.0)  # $1 per token
    held = budget.reserve(1, 0)
    assert held == 1.0 and budget.reserve(1, 0) is None and budget.reached
    assert budget.settle(held, 1, 0) == 1.0 and budget.spent_usd == 2.0


def test_unusable_retry_after_values_are_ignored():
    # a proxy's odd header must neither crash the run nor make a worker sleep forever
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "inf"}) is None
    assert parse_retry_after({"retry-after-ms": "inf", "retry-after": "3"}) == 3.0
    error = status_error(429, {"retry-after": "1.5 seconds"})
    assert classify(error).error_class == "rate_limit" and classify(error).retry_after is None
    # an HTTP date is GMT even when written with -0000 (parsed without a time zone)
    future = time.time() + 100
    stamp = time.strftime("%a, %d %b %Y %H:%M:%S -0000", time.gmtime(future))
    assert parse_retry_after({"retry-after": stamp}) == pytest.approx(100, abs=2)


def test_big_endian_16_bit_grayscale_keeps_its_levels(tmp_path):
    Image.new("I;16B", (40, 30), 40000).save(tmp_path / "scan.tiff")
    encoded = ImageEncoder(tmp_path, image_format="png").encode("scan.tiff")
    assert decode(encoded.url).getpixel((5, 5)) == (156, 156, 156)  # 40000 / 256


def test_32bit_grayscale_holding_8bit_values_is_not_sent_black(tmp_path):
    ramp = np.tile(np.linspace(0, 255, 64), (16, 1)).astype(np.int32)  # mode I, values 0-255
    Image.fromarray(ramp).save(tmp_path / "scan.tif")
    encoded = ImageEncoder(tmp_path, image_format="png").encode("scan.tif")
    row = np.asarray(decode(encoded.url))[8, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and np.all(np.diff(row) >= 0)
