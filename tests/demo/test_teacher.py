"""The demo teacher over HTTP, through the real openai client (sync and async, no retries)."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import openai
import pytest
from PIL import Image

from mmgen.demo import build_demo
from mmgen.demo.charts import describe, make_qa
from mmgen.demo.recognize import REFUSAL, ImageIndex
from mmgen.demo.teacher import Teacher, TeacherConfig

FORMAT = "Reply with only a JSON list of {n} objects with the keys {keys}."
QA, IQRA = '"Q", "A"', '"I", "Q", "R", "A"'
SMALL_DEMO = {"reference": {"bar": 6, "line": 6, "pie": 6}, "eval": {"bar": 2, "line": 2, "pie": 2},
              "pool": {"bar": 30, "line": 30, "pie": 30, "map": 10, "shapes": 10, "noise": 10,
                       "table": 10}}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    build_demo(root, seed=0, counts=SMALL_DEMO)
    return root


@pytest.fixture(scope="module")
def truth(demo_dir) -> dict:
    return json.loads((demo_dir / "truth.json").read_text())


@pytest.fixture(scope="module")
def index(demo_dir) -> ImageIndex:
    return ImageIndex(demo_dir)  # built once; every teacher in this module shares it


@pytest.fixture(scope="module")
def teacher(demo_dir, index):
    with Teacher(TeacherConfig(data_dir=str(demo_dir)), index=index) as base_url:
        yield base_url


def client(base_url: str, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="not-a-real-key", max_retries=0, **kwargs)


def data_url(image: Image.Image, max_side: int = 256, quality: int = 70) -> str:
    """What the generation engine sends: RGB, longest side <= max_side, lossy JPEG."""
    image = image.convert("RGB")
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def user_turn(text: str, *urls: str) -> dict:
    parts = [{"type": "text", "text": text}]
    parts += [{"type": "image_url", "image_url": {"url": url, "detail": "low"}} for url in urls]
    return {"role": "user", "content": parts}


def ask(base_url: str, messages: list[dict]) -> str:
    reply = client(base_url).chat.completions.create(model="demo-teacher", messages=messages)
    return reply.choices[0].message.content


def truthful_items(entry: dict) -> set[tuple[str, str]]:
    """Every (question, answer) pair make_qa can produce for a truth entry (it saturates fast)."""
    pairs = set()
    for seed in range(30):
        pairs |= {(item["Q"], item["A"]) for item in make_qa(entry, random.Random(seed), 40)}
    return pairs


def pool_image(truth: dict, kind: str, skip: int = 0) -> str:
    return [path for path, entry in sorted(truth.items())
            if path.startswith("pool/") and entry["kind"] == kind][skip]


@pytest.mark.parametrize("kind", ["bar", "pie", "line", "map"])
def test_recognises_resized_jpeg_and_answers_truthfully(teacher, demo_dir, truth, kind):
    path = pool_image(truth, kind, skip=3)
    reference_examples = [data_url(Image.open(demo_dir / p)) for p in sorted(truth)[:2]]
    candidate = data_url(Image.open(demo_dir / path), max_side=256, quality=70)
    keys = '"Q", "R", "A"'
    text = f"Write questions about the last image. {FORMAT.format(n=3, keys=keys)}"
    content = ask(teacher, [{"role": "system", "content": "You write training data."},
                            user_turn(text, *reference_examples, candidate)])
    items = json.loads(content)
    assert len(items) == 3
    assert all(list(item) == ["Q", "R", "A"] for item in items)
    allowed = truthful_items(truth[path])
    for item in items:
        assert (item["Q"], item["A"]) in allowed, f"{item} is not true of {path}: {truth[path]}"
    # answer-only modes get the truthful description of the candidate, not of the examples
    described = json.loads(ask(teacher, [user_turn(FORMAT.format(n=1, keys='"A"'), candidate)]))
    assert described == [{"A": describe(truth[path])}]


def test_unknown_image_gets_an_honest_refusal(teacher):
    noise = np.random.default_rng(5).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    blobs = Image.fromarray(noise).resize((12, 9)).resize((320, 240), Image.Resampling.BILINEAR)
    for image in (Image.fromarray(noise), blobs):
        content = ask(teacher, [user_turn(FORMAT.format(n=3, keys=QA), data_url(image))])
        assert content == REFUSAL
        assert "can't help with this image" in content
        with pytest.raises(json.JSONDecodeError):
            json.loads(content)


def test_plain_question_and_text_only_prompt(teacher, demo_dir, truth):
    path = pool_image(truth, "bar")
    plain = ask(teacher, [user_turn("What does this chart show?",
                                    data_url(Image.open(demo_dir / path), quality=85))])
    assert plain == describe(truth[path])
    text = f"Imagine a chart and ask about it. {FORMAT.format(n=2, keys=IQRA)}"
    items = json.loads(ask(teacher, [user_turn(text)]))
    assert len(items) == 2 and all(list(item) == ["I", "Q", "R", "A"] for item in items)
    assert items[0]["I"] == items[1]["I"] and len(items[0]["I"]) > 40
    assert all(item["A"] in item["R"] for item in items)  # reasoning ends with the answer


def test_format_fixing_call_gets_a_valid_answer(teacher, demo_dir, truth):
    path = pool_image(truth, "pie")
    fmt = FORMAT.format(n=2, keys=QA)
    messages = [user_turn(f"Ask about this chart. {fmt}", data_url(Image.open(demo_dir / path))),
                {"role": "assistant", "content": "Sure! [{'Q': 'What is"},
                {"role": "user", "content": f"That was not valid JSON. {fmt}"}]
    items = json.loads(ask(teacher, messages))
    assert len(items) == 2 and all(set(item) == {"Q", "A"} for item in items)
    assert {(item["Q"], item["A"]) for item in items} <= truthful_items(truth[path])


def test_models_endpoint_and_bad_image(teacher):
    assert [model.id for model in client(teacher).models.list()] == ["demo-teacher"]
    broken = "data:image/png;base64," + base64.b64encode(b"not an image").decode()
    with pytest.raises(openai.BadRequestError, match="could not be decoded"):
        ask(teacher, [user_turn(FORMAT.format(n=1, keys='"A"'), broken)])


def outcome(call) -> str:
    """Run one client call returning the reply content, and name what the caller saw."""
    try:
        content = call()
    except openai.APIError as err:
        return error_kind(err)
    try:
        json.loads(content)
    except json.JSONDecodeError:
        return "malformed"
    return "ok"


def error_kind(err: openai.APIError) -> str:
    if isinstance(err, openai.RateLimitError):
        assert float(err.response.headers["retry-after"]) == pytest.approx(0.25)
        return "rate_limit"
    if isinstance(err, openai.InternalServerError):
        return "server"
    if isinstance(err, openai.APITimeoutError):  # before APIConnectionError: it is a subclass
        return "stall"
    if isinstance(err, openai.APIConnectionError):
        return "drop"
    raise err


def text_prompt(number: int) -> list[dict]:
    return [user_turn(f"Prompt {number}: imagine a chart. {FORMAT.format(n=2, keys=IQRA)}")]


def test_each_fault_appears_at_its_rate_with_the_right_client_error(demo_dir, truth, index):
    config = TeacherConfig(data_dir=str(demo_dir), rate_429=0.1, retry_after_s=0.25,
                           rate_500=0.1, rate_malformed=0.1, rate_stall=0.1, stall_s=5.0,
                           rate_drop=0.1, seed=3)
    candidate = data_url(Image.open(demo_dir / pool_image(truth, "line")))
    requests = 200

    async def run(base_url: str) -> Counter:
        async_client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0,
                                          timeout=2.0)
        slots = asyncio.Semaphore(32)

        async def one(number: int) -> str:
            async with slots:
                try:
                    reply = await async_client.chat.completions.create(
                        model="demo-teacher",
                        messages=[user_turn(f"Prompt {number}. {FORMAT.format(n=2, keys=QA)}",
                                            candidate)])
                except openai.APIError as err:
                    return error_kind(err)
            return outcome(lambda: reply.choices[0].message.content)

        async with async_client:
            return Counter(await asyncio.gather(*(one(n) for n in range(requests))))

    teacher = Teacher(config, index=index)
    with teacher as base_url:
        seen = asyncio.run(run(base_url))
    served = dict(teacher.stats)
    assert sum(seen.values()) == requests
    for kind in ("rate_limit", "server", "malformed", "stall", "drop"):
        assert 8 <= seen[kind] <= 32, f"{kind}: {seen[kind]} of {requests}, expected about 20"
        assert served[kind] == seen[kind], (kind, served, seen)
    assert seen["ok"] == served["ok"] and 75 <= seen["ok"] <= 125


def test_server_error_rate_half_with_sync_client(demo_dir, index):
    with Teacher(TeacherConfig(data_dir=str(demo_dir), rate_500=0.5, seed=11), index=index) as url:
        sync_client = client(url)
        seen = Counter(outcome(lambda n=n: sync_client.chat.completions.create(
            model="demo-teacher", messages=text_prompt(n)).choices[0].message.content)
            for n in range(200))
    assert set(seen) == {"server", "ok"}
    assert 75 <= seen["server"] <= 125


def test_faults_are_deterministic_by_seed_whatever_the_order(demo_dir, index):
    def outcomes(seed: int, order: list[int]) -> dict[tuple[int, int], str]:
        config = TeacherConfig(data_dir=str(demo_dir), rate_429=0.2, retry_after_s=0.25,
                               rate_500=0.2, rate_drop=0.1, seed=seed)
        with Teacher(config, index=index) as base_url:
            sync_client = client(base_url)
            return {(n, attempt): outcome(lambda n=n: sync_client.chat.completions.create(
                model="demo-teacher", messages=text_prompt(n)).choices[0].message.content)
                for n in order for attempt in range(3)}

    forward = outcomes(7, list(range(40)))
    assert outcomes(7, list(range(40))[::-1]) == forward
    assert outcomes(8, list(range(40))) != forward
    assert set(forward.values()) == {"ok", "rate_limit", "server", "drop"}
    # a retry of the same body gets a fresh draw, so most prompts get through within 3 tries
    assert sum(forward[n, 0] != forward[n, 1] for n in range(40)) >= 10
    assert sum(any(forward[n, a] == "ok" for a in range(3)) for n in range(40)) >= 30


def test_command_line_entry_serves_until_terminated(demo_dir):
    process = subprocess.Popen(
        [sys.executable, "-m", "mmgen.demo.teacher", "--data-dir", str(demo_dir), "--port", "0",
         "--latency", "0.01"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        assert [model.id for model in client(base_url).models.list()] == ["demo-teacher"]
        assert "demo teacher" in ask(base_url, [{"role": "user", "content": "Who are you?"}])
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=20)
    assert process.returncode == 0, errors
    assert "stand-in for GPT-4o" in errors
