"""One image loader for every stage: any file Pillow reads becomes an upright 8-bit RGB image.

Partition, retrieve, the scorers, generate and the report all open images here, so a 16-bit
scan or a CMYK photo looks the same to CLIP, the teacher and the target model.

What each kind of file becomes:
- 16-bit grayscale (modes I;16*): divided by 256, its bit depth.
- 32-bit integer grayscale (mode I): its bit depth is unknown (Pillow also uses I for 8- and
  16-bit data), so it is read as the smallest of 8, 16 or 32 bits that holds its largest value
  (0-255 stays as is, up to 65535 is divided by 256, above by 2**24); negatives become 0.
- Float grayscale (mode F): values up to 1.0 are read as 0-1 and scaled by 255; larger values
  follow the integer rule.
- Transparency (RGBA, LA, PA, a palette with a transparent colour): flattened onto white.
- CMYK, YCbCr, 1-bit and the rest: Pillow's own conversion.
- EXIF orientation is applied; an animated image gives its first frame.
- More pixels than Pillow's MAX_IMAGE_PIXELS (about 89 million): `DecompressionBomb`, raised
  before any pixel is decoded, so a hostile pool file costs nothing.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from mmgen.errors import UserError

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
ROTATED = {5, 6, 7, 8}  # EXIF orientations that swap width and height
ORIENTATION_TAG = 0x0112


class ImageError(UserError):
    """An image could not be read; the message names it and says why. Callers skip or stop."""

    def __init__(self, name_for_errors: str, reason: str):
        super().__init__(f"{name_for_errors} could not be read: {reason}")
        self.reason = reason


class DecompressionBomb(ImageError):
    """An image whose header claims more pixels than the limit; it is never decoded."""


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) after shrinking so that the longer side is at most max_side."""
    if not max_side:
        return width, height
    scale = min(1.0, max_side / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def orientation(image: Image.Image) -> int:
    """The EXIF orientation (1 = upright) of an opened image."""
    return image.getexif().get(ORIENTATION_TAG, 1) or 1


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) as shown after the EXIF orientation is applied; reads only the header."""
    return image.size[::-1] if orientation(image) in ROTATED else image.size


def _check_pixels(image: Image.Image, name_for_errors: str, max_pixels: int | None) -> None:
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    width, height = image.size
    if limit and width * height > limit:
        raise DecompressionBomb(name_for_errors,
                                f"decompression bomb: {width}x{height} = {width * height:,} "
                                f"pixels, over the limit of {limit:,} (PIL.Image.MAX_IMAGE_PIXELS)"
                                "; skipped")


def _gray_to_8bit(image: Image.Image) -> Image.Image:
    """Mode L from a 16/32-bit integer or float grayscale image (rules in the module docstring)."""
    if image.mode in SIXTEEN_BIT_MODES:
        # point() refuses big-endian and native 16-bit modes: widen them to "I" first
        return image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    low, high = image.getextrema()
    if image.mode == "F" and high <= 1.0:
        scale = 255.0
    else:
        scale = 1.0 if high <= 255 else 1 / 256 if high <= 65535 else 1 / 2 ** 24
    if scale == 1.0 and low >= 0:
        return image.convert("L")
    # convert("L") clips, so negatives become 0 and the scaled maximum stays <= 255
    return image.point(lambda value: value * scale).convert("L")


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB version of an opened image of any mode (rules in the module docstring)."""
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in TRANSPARENT_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        image = _gray_to_8bit(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def _reason(err: Exception) -> str:
    if isinstance(err, FileNotFoundError):
        return "file not found"
    if isinstance(err, UnidentifiedImageError):
        return "not an image Pillow can read"
    return f"{type(err).__name__}: {err}"


@contextlib.contextmanager
def _read_errors(name_for_errors: str):
    """Turn whatever reading an image raises into ImageError (or DecompressionBomb)."""
    try:
        yield
    except ImageError:
        raise
    except Image.DecompressionBombError as err:
        raise DecompressionBomb(name_for_errors, f"decompression bomb: {err}; skipped") from err
    except Exception as err:  # corrupt files raise many types; all mean unreadable
        raise ImageError(name_for_errors, _reason(err)) from err


def image_size(path: str | Path, *, name_for_errors: str | None = None,
               max_pixels: int | None = None) -> tuple[int, int]:
    """The upright (width, height) of the image at `path`, from its header; errors as open_image."""
    name_for_errors = name_for_errors or f"image '{path}'"
    with _read_errors(name_for_errors), Image.open(path) as opened:
        _check_pixels(opened, name_for_errors, max_pixels)
        return upright_size(opened)


def open_image(path: str | Path | bytes, *, max_side: int | None = None, draft: bool = False,
               name_for_errors: str | None = None, max_pixels: int | None = None) -> Image.Image:
    """The image at `path` (a file, or its bytes) as upright 8-bit RGB, its longer side shrunk
    to at most `max_side`.

    With `draft`, a JPEG larger than max_side decodes at a reduced DCT scale (1/2, 1/4, 1/8)
    whose longer side stays >= max_side, then resizes: 2-4x faster, pixels differ slightly from
    a full decode. Raises `DecompressionBomb` for more than `max_pixels` (default: Pillow's
    limit) and `ImageError` for anything else unreadable; `name_for_errors` (default
    "image '<path>'") starts their message.
    """
    in_memory = isinstance(path, bytes)
    name_for_errors = name_for_errors or ("image (in memory)" if in_memory else f"image '{path}'")
    with _read_errors(name_for_errors):
        if (len(path) if in_memory else Path(path).stat().st_size) == 0:
            raise ImageError(name_for_errors, "empty file (0 bytes)")
        with Image.open(io.BytesIO(path) if in_memory else path) as opened:
            _check_pixels(opened, name_for_errors, max_pixels)
            opened.seek(0)  # an animated image: its first frame
            size = scaled_size(*upright_size(opened), max_side)
            if draft and max_side and opened.format == "JPEG":  # stored (unturned) size counts
                opened.draft("RGB", scaled_size(*opened.size, max_side))
            image = ImageOps.exif_transpose(opened) if orientation(opened) != 1 else opened
            image = to_rgb(image)
            if image.size != size:
                image = image.resize(size, Image.Resampling.LANCZOS)
            image.load()  # decode before the file closes
            return image
