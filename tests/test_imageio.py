"""The shared image loader: every awkward file kind comes out as the picture a person would see."""
from __future__ import annotations

import numpy as np
import pytest
from helpers.images import gray_ramp, write_gray, write_png_bomb
from PIL import Image

from mmgen.imageio import DecompressionBomb, ImageError, open_image, to_rgb


def gray_row(image: Image.Image) -> np.ndarray:
    """The middle row of the red channel, as integers."""
    pixels = np.asarray(image)
    assert image.mode == "RGB" and pixels.ndim == 3
    return pixels[pixels.shape[0] // 2, :, 0].astype(int)


@pytest.mark.parametrize("name, dtype, full_scale", [
    ("gray8.png", np.uint8, 255),          # mode L
    ("gray16.png", np.uint16, 65535),      # mode I;16: was all white through convert("RGB")
    ("gray32_8bit.tif", np.int32, 255),    # mode I holding 0-255: must not come out black
    ("gray32_16bit.tif", np.int32, 65535),  # mode I holding 16-bit values
    ("gray_float.tif", np.float32, 1.0),   # mode F in 0-1
])
def test_grayscale_of_any_depth_keeps_its_ramp(tmp_path, name, dtype, full_scale):
    path = write_gray(tmp_path / name, gray_ramp(), dtype, full_scale)
    row = gray_row(open_image(path))
    assert row[0] <= 2 and row[-1] >= 253  # black on the left, white on the right
    assert np.all(np.diff(row) >= 0) and len(set(row.tolist())) > 30


def test_palette_transparency_is_flattened_onto_white(tmp_path):
    image = Image.new("P", (20, 10), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (10, 0, 20, 10))
    image.save(tmp_path / "palette.png", transparency=0)  # colour 0 (black) is transparent
    loaded = open_image(tmp_path / "palette.png")
    assert loaded.getpixel((2, 5)) == (255, 255, 255) and loaded.getpixel((15, 5)) == (255, 0, 0)


def test_cmyk_keeps_its_colour(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")  # pure red
    red, green, blue = open_image(tmp_path / "cmyk.jpg").getpixel((8, 8))
    assert red > 220 and green < 40 and blue < 40


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), "white")
    image.paste((255, 0, 0), (0, 0, 10, 20))  # red strip on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: the strip ends up on top
    image.save(tmp_path / "turned.jpg", exif=exif, quality=95)
    loaded = open_image(tmp_path / "turned.jpg")
    assert loaded.size == (20, 40)
    assert loaded.getpixel((10, 2))[1] < 60 and loaded.getpixel((10, 35)) >= (200, 200, 200)


def test_animated_image_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (12, 12), colour) for colour in ("blue", "yellow", "green")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    assert Image.open(tmp_path / "anim.gif").n_frames == 3
    red, green, blue = open_image(tmp_path / "anim.gif").getpixel((6, 6))
    assert blue > 200 and red < 40 and green < 40


def test_max_side_shrinks_keeping_the_aspect(tmp_path):
    Image.new("RGB", (400, 100), "teal").save(tmp_path / "wide.png")
    assert open_image(tmp_path / "wide.png", max_side=100).size == (100, 25)
    assert open_image(tmp_path / "wide.png", max_side=1000).size == (400, 100)


def test_decompression_bomb_is_skipped_with_a_reason_before_decoding(tmp_path):
    bomb = write_png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 1000
    with pytest.raises(DecompressionBomb, match=r"bomb.png' could not be read: decompression "
                                                 r"bomb: .*1600000000 pixels.*skipped"):
        open_image(bomb)
    Image.new("RGB", (30, 30)).save(tmp_path / "big.png")
    with pytest.raises(DecompressionBomb, match="over the limit of 100"):
        open_image(tmp_path / "big.png", max_pixels=100)


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"), (b"not a png at all", "not an image Pillow can read"),
    (None, "file not found")])
def test_unreadable_files_name_the_image_and_the_reason(tmp_path, content, reason):
    path = tmp_path / "pool" / "x.png"
    path.parent.mkdir()
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=f"image 'x.png' under 'pool' could not be read: {reason}"):
        open_image(path, name_for_errors="image 'x.png' under 'pool'")


def test_truncated_file_is_an_image_error(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:300])
    with pytest.raises(ImageError, match="cut.png"):
        open_image(tmp_path / "cut.png")


def test_to_rgb_converts_an_already_open_16bit_image():
    wide = Image.fromarray((gray_ramp() * 65535).astype(np.uint16))
    assert wide.mode == "I;16"
    row = gray_row(to_rgb(wide))
    assert row[0] == 0 and row[-1] == 255
