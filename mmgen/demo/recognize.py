"""What the demo teacher sees in a request, and what it answers.

Every image in `truth.json` gets a perceptual signature: small gray and colour thumbnails, mean
removed, norm one. A request image matches the demo image with the closest signature (cosine
similarity) if that similarity clears a threshold, however the client resized or re-encoded it;
otherwise it is unknown. The answer about a known image comes from its truth entry through
`mmgen.demo.charts` (make_qa, describe), in the shape the reply format sentence asks for.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import logging
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

from mmgen.demo.teacher_faults import seeded_rng

log = logging.getLogger(__name__)

SIGNATURE_SIDE = 32  # gray thumbnail side in pixels: resizing and JPEG barely move it
COLOUR_SIDE = 16  # colour thumbnail side in pixels: tells apart charts alike but for colours
COLOUR_WEIGHT = 0.3  # share of the colour thumbnail in the similarity
COARSE_SIDE = 8  # gray thumbnail side of the first pass
SHORTLIST = 16  # images the first pass keeps for the fine comparison
# Cosine similarity of fine signatures. Demo images resized to 96..1024 px and saved as JPEG
# q=30..90 score >= 0.98 against themselves; two different demo images score <= 0.97.
MATCH_THRESHOLD = 0.975
FLAT_STD = 1.0  # gray levels; a thumbnail this flat has no shape to match on
IMAGE_TOKENS = 255  # prompt tokens counted per image (GPT-4o, one 512 px tile at high detail)
REPLY_FORMAT = re.compile(r'JSON list of (\d+) objects with the keys ((?:"\w+"(?:, )?)+)')
REFUSAL = ("I'm sorry, but I can't help with this image. I don't recognise it, so anything I said "
           "about it would be a guess. (I am the mmgen demo teacher, an offline stand-in for "
           "GPT-4o that only knows the images of the demo data set.)")
NO_IMAGE_ANSWER = ("I am the mmgen demo teacher, an offline stand-in for GPT-4o. Send me a demo "
                   "image and ask for a JSON list of question/answer objects about it.")


class BadRequest(ValueError):
    """The request cannot be answered as sent (the teacher answers 400)."""


class UnreadableImage(BadRequest):
    """A request image could not be decoded."""


def _unit(values: np.ndarray) -> np.ndarray:
    values = values.ravel() - values.mean()
    return values / max(float(np.linalg.norm(values)), 1e-6)


def image_signature(image: Image.Image) -> tuple[np.ndarray, np.ndarray] | None:
    """(coarse, fine) unit-norm signatures of an image, or None when it is too flat to match.

    fine = gray 32x32 thumbnail (shape) + colour 16x16 thumbnail (tells apart charts alike but for
    their colours); coarse = gray 8x8, for a cheap first pass over the whole index.
    """
    side = SIGNATURE_SIDE
    image.draft("RGB", (side * 4, side * 4))  # JPEG: decode at up to 1/8 scale, most of the cost
    # Bicubic low-passes before it subsamples, so thin lines land alike whatever the source size;
    # reducing_gap box-averages big images down to 3x the side first, which is cheaper.
    thumbnail = image.convert("RGB").resize((side, side), Image.Resampling.BICUBIC,
                                            reducing_gap=3.0)
    colour = np.asarray(thumbnail, dtype=np.float32)
    gray = colour @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if gray.std() < FLAT_STD:
        return None
    coarse = _unit(gray.reshape(COARSE_SIDE, side // COARSE_SIDE, COARSE_SIDE, -1).mean((1, 3)))
    colour = colour.reshape(COLOUR_SIDE, side // COLOUR_SIDE, COLOUR_SIDE, -1, 3).mean((1, 3))
    fine = np.concatenate([_unit(gray) * (1 - COLOUR_WEIGHT) ** 0.5,
                           _unit(colour) * COLOUR_WEIGHT ** 0.5])
    return coarse, fine


def decode_data_url(url: str) -> Image.Image:
    """Open a `data:image/...;base64,` URL as a lazy PIL image; raise UnreadableImage if broken."""
    header, _, payload = url.partition(",")
    if not header.startswith("data:image/") or ";base64" not in header:
        raise UnreadableImage("the demo teacher reads only base64 data URLs "
                              f"('data:image/...;base64,'), got {url[:40]!r}")
    try:
        image = Image.open(io.BytesIO(base64.b64decode(payload, validate=False)))
        image.size  # noqa: B018  (forces the header to be read)
    except (binascii.Error, OSError, ValueError) as err:
        raise UnreadableImage(f"image data could not be decoded: {err}") from err
    return image


class ImageIndex:
    """Signatures of every image in a demo data dir's truth.json, and a cached matcher."""

    def __init__(self, data_dir: str | Path, cache_size: int = 4096):
        self.data_dir = Path(data_dir)
        truth_path = self.data_dir / "truth.json"
        if not truth_path.is_file():
            raise FileNotFoundError(
                f"{truth_path}: not found; build the demo data first "
                f"(python -m mmgen.demo data_dir={self.data_dir})"
            )
        self.truth: dict[str, dict] = json.loads(truth_path.read_text(encoding="utf-8"))
        self.paths: list[str] = []
        coarse, fine = [], []
        for relative_path in sorted(self.truth):
            with Image.open(self.data_dir / relative_path) as image:
                signature = image_signature(image)
            if signature is not None:  # a flat image cannot be told apart; leave it unknown
                self.paths.append(relative_path)
                coarse.append(signature[0])
                fine.append(signature[1])
        self.coarse = np.stack(coarse) if coarse else np.zeros((0, COARSE_SIDE**2), np.float32)
        self.fine = np.stack(fine) if fine else np.zeros((0, 1), np.float32)
        self._cache: OrderedDict[bytes, str | None] = OrderedDict()
        self._cache_size = cache_size
        log.info("demo teacher indexed %d of %d images in %s", len(self.paths), len(self.truth),
                 truth_path)

    def match(self, image: Image.Image) -> str | None:
        """Path (relative to data_dir) of the demo image `image` shows, or None if unknown."""
        signature = image_signature(image)
        if signature is None or not self.paths:
            return None
        # einsum, not @: BLAS would start threads for these small products and burn the CPU
        coarse = np.einsum("ij,j->i", self.coarse, signature[0])
        shortlist = np.argpartition(-coarse, SHORTLIST)[:SHORTLIST] if len(coarse) > SHORTLIST \
            else np.arange(len(coarse))
        similarities = np.einsum("ij,j->i", self.fine[shortlist], signature[1])
        best = int(np.argmax(similarities))
        if similarities[best] < MATCH_THRESHOLD:
            return None
        return self.paths[int(shortlist[best])]

    def recognise_url(self, url: str) -> str | None:
        """Match a data URL, caching by content hash (the same candidate recurs across retries)."""
        key = hashlib.blake2b(url.encode("ascii", "replace"), digest_size=16).digest()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        path = self.match(decode_data_url(url))
        self._cache[key] = path
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return path


def image_urls(messages: list) -> list[str]:
    """Every image URL in the request messages, in order."""
    urls = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for part in content:
            if isinstance(part, dict) and part.get("type") == "image_url":
                image_url = part.get("image_url")
                url = image_url.get("url") if isinstance(image_url, dict) else image_url
                if isinstance(url, str):
                    urls.append(url)
    return urls


def message_texts(messages: list) -> list[str]:
    """Every text in the request messages, in order (string contents and text parts)."""
    texts = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(part["text"] for part in content
                         if isinstance(part, dict) and isinstance(part.get("text"), str))
    return texts


def reply_format(texts: list[str]) -> tuple[int, list[str]] | None:
    """(n, keys) from the last reply format sentence in the texts, or None if there is none."""
    found = None
    for text in texts:
        for found in REPLY_FORMAT.finditer(text):
            pass
    if found is None:
        return None
    return int(found[1]), re.findall(r'"(\w+)"', found[2])


def compose_reply(body: bytes, index: ImageIndex) -> tuple[str, int]:
    """The teacher's reply text to a chat request body, and the request's prompt token estimate."""
    try:
        request = json.loads(body)
    except ValueError as err:
        raise BadRequest(f"request body is not valid JSON: {err}") from err
    if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
        raise BadRequest("request body needs a 'messages' list")
    if request.get("stream"):
        raise BadRequest("the demo teacher does not stream; send stream=false")
    texts, urls = message_texts(request["messages"]), image_urls(request["messages"])
    prompt_tokens = sum(len(text) for text in texts) // 4 + IMAGE_TOKENS * len(urls)
    return _reply_text(texts, urls, index), prompt_tokens


def _reply_text(texts: list[str], urls: list[str], index: ImageIndex) -> str:
    from mmgen.demo import charts, kinds  # drawing code loads only when a reply needs it

    path = index.recognise_url(urls[-1]) if urls else None  # the candidate is the last image
    if urls and path is None:
        return REFUSAL
    entry = index.truth[path] if path else None
    rng = seeded_rng(path or "no image", *texts)
    wanted = reply_format(texts)
    if wanted is None:
        return charts.describe(entry) if entry else NO_IMAGE_ANSWER
    count, keys = wanted
    if entry is None:  # text-only prompt: imagine a chart, describe it in I, ask about it
        entry = kinds.draw(rng.choice(charts.CHART_KINDS), rng)[1]
    description = charts.describe(entry)
    if keys == ["A"]:  # answer-only modes ask for what the image shows
        return json.dumps([{"A": description}] * count, ensure_ascii=False)
    items = charts.make_qa(entry, rng, count)
    return json.dumps([{key: item.get(key, description) for key in keys} for item in items],
                      ensure_ascii=False)
