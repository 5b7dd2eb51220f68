"""Images as base64 data URLs: read once, converted to RGB, downscaled, encoded, cached.

In-context example images recur across thousands of prompts, so encoded images are kept in a
bounded LRU cache keyed by path. Encoding runs on a thread pool (Pillow releases the GIL).
"""
from __future__ import annotations

import base64
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from mmgen.vlm.cost import image_tokens

FORMATS = {"jpeg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png")}
DETAILS = ("low", "high", "auto")


ROTATED = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def _orientation(image: Image.Image) -> int:
    return image.getexif().get(0x0112, 1) or 1


class ImageError(Exception):
    """An image could not be read or encoded; the message names the path and the reason."""


@dataclass(frozen=True)
class EncodedImage:
    path: str  # relative to dataset.root
    url: str  # data URL
    width: int  # pixels after downscaling
    height: int
    tokens: int  # estimated prompt tokens at the configured detail


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB version of any mode: transparency is flattened onto white, CMYK/L/P/I;16 converted."""
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # point() refuses the big-endian and native 16-bit modes: widen them to "I" first
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    return image if image.mode == "RGB" else image.convert("RGB")


def scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) after shrinking so that the longer side is at most max_side."""
    scale = min(1.0, max_side / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


class ImageEncoder:
    """Encodes images under `root` as data URLs with the configured size, format and detail."""

    def __init__(self, root: str | Path, max_side: int = 1024, image_format: str = "jpeg",
                 jpeg_quality: int = 85, detail: str = "auto", cache_size: int = 512):
        if image_format not in FORMATS:
            raise ValueError(f"generate.image_format={image_format!r}; use one of {sorted(FORMATS)}")
        if detail not in DETAILS:
            raise ValueError(f"generate.image_detail={detail!r}; use one of {list(DETAILS)}")
        self.root = Path(root)
        self.max_side, self.image_format = max_side, image_format
        self.jpeg_quality, self.detail = jpeg_quality, detail
        self.cache_size = cache_size
        self._cache: OrderedDict[str, EncodedImage] = OrderedDict()
        self._measured: OrderedDict[str, EncodedImage] = OrderedDict()  # header-only, dry runs
        self._lock = threading.Lock()
        self.encoded = 0  # images actually decoded and encoded (cache misses)

    def cached(self, path: str) -> EncodedImage | None:
        """The encoded image if it is in the cache, else None (no work done)."""
        with self._lock:
            image = self._cache.get(path)
            if image is not None:
                self._cache.move_to_end(path)
            return image

    def encode(self, path: str) -> EncodedImage:
        """The data URL of the image at root/path; cached; raises ImageError with the reason."""
        return self._lookup(self._cache, path, self._encode)

    def _lookup(self, cache: OrderedDict, path: str, make) -> EncodedImage:
        """LRU lookup shared by encode and measure: the work runs outside the lock."""
        with self._lock:
            if path in cache:
                cache.move_to_end(path)
                return cache[path]
        made = make(path)
        with self._lock:
            if cache is self._cache:
                self.encoded += 1
            cache[path] = made
            while len(cache) > self.cache_size:
                cache.popitem(last=False)
        return made

    def _encode(self, path: str) -> EncodedImage:
        pil_format, mime = FORMATS[self.image_format]
        try:
            with Image.open(self.root / path) as image:
                turned = _orientation(image) in ROTATED
                size = scaled_size(*(image.size[::-1] if turned else image.size), self.max_side)
                if image.format == "JPEG" and not turned:
                    image.draft("RGB", size)  # decode JPEG at a reduced scale when it can
                if _orientation(image) != 1:
                    image = ImageOps.exif_transpose(image)
                image = to_rgb(image)
                if image.size != size:
                    image = image.resize(size, Image.Resampling.LANCZOS)
                buffer = io.BytesIO()
                options = {"quality": self.jpeg_quality} if pil_format == "JPEG" else {}
                image.save(buffer, pil_format, **options)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise ImageError(f"image '{path}' under '{self.root}' could not be read: "
                             f"{type(err).__name__}: {err}") from err
        url = f"data:{mime};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        return EncodedImage(path, url, size[0], size[1], image_tokens(*size, self.detail))

    def measure(self, path: str) -> EncodedImage:
        """Like encode but only reads the header: size and tokens, a stub URL (for dry runs)."""
        return self._lookup(self._measured, path, self._measure)

    def _measure(self, path: str) -> EncodedImage:
        try:
            with Image.open(self.root / path) as image:
                turned = _orientation(image) in ROTATED
                size = scaled_size(*(image.size[::-1] if turned else image.size), self.max_side)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise ImageError(f"image '{path}' under '{self.root}' could not be read: "
                             f"{type(err).__name__}: {err}") from err
        _, mime = FORMATS[self.image_format]
        stub = f"data:{mime};base64,<{path} {size[0]}x{size[1]} not inlined>"
        return EncodedImage(path, stub, size[0], size[1], image_tokens(*size, self.detail))
