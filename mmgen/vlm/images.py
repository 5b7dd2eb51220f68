"""Images as base64 data URLs: read once (mmgen.imageio), downscaled, encoded, cached.

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

from mmgen.imageio import ImageError, image_size, open_image, scaled_size
from mmgen.vlm.cost import image_tokens

__all__ = ["EncodedImage", "ImageEncoder", "ImageError"]  # ImageError: the engine catches it

FORMATS = {"jpeg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png")}
DETAILS = ("low", "high", "auto")


@dataclass(frozen=True)
class EncodedImage:
    path: str  # relative to dataset.root
    url: str  # data URL
    width: int  # pixels after downscaling
    height: int
    tokens: int  # estimated prompt tokens at the configured detail


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
        image = open_image(self.root / path, max_side=self.max_side,
                           name_for_errors=f"image '{path}' under '{self.root}'")
        buffer = io.BytesIO()
        options = {"quality": self.jpeg_quality} if pil_format == "JPEG" else {}
        image.save(buffer, pil_format, **options)
        url = f"data:{mime};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        return EncodedImage(path, url, *image.size, image_tokens(*image.size, self.detail))

    def measure(self, path: str) -> EncodedImage:
        """Like encode but only reads the header: size and tokens, a stub URL (for dry runs)."""
        return self._lookup(self._measured, path, self._measure)

    def _measure(self, path: str) -> EncodedImage:
        size = scaled_size(*image_size(self.root / path,
                                       name_for_errors=f"image '{path}' under '{self.root}'"),
                           self.max_side)
        _, mime = FORMATS[self.image_format]
        stub = f"data:{mime};base64,<{path} {size[0]}x{size[1]} not inlined>"
        return EncodedImage(path, stub, size[0], size[1], image_tokens(*size, self.detail))


def encoder_for(cfg) -> ImageEncoder:
    """The image encoder for cfg.generate's size, format and detail, rooted at dataset.root."""
    gen = cfg.generate
    return ImageEncoder(cfg.dataset.root, gen.image_max_side, gen.image_format, gen.jpeg_quality,
                        gen.image_detail, gen.image_cache)
