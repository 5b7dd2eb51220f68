"""Image files in the awkward formats that real pools contain, written for the loader tests."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png_bomb(path: Path, side: int = 40_000) -> Path:
    """A PNG of a few hundred bytes whose header claims side x side 8-bit gray pixels."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * side
    data = zlib.compress(row * 4)  # a few rows: the file is truncated, only the header matters
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data)
                     + _chunk(b"IEND", b""))
    return path


def gray_ramp(width: int = 64, height: int = 32) -> np.ndarray:
    """A left-to-right ramp from 0 to 1 (float64, height x width)."""
    return np.tile(np.linspace(0.0, 1.0, width), (height, 1))


def write_gray(path: Path, ramp: np.ndarray, dtype, full_scale: float) -> Path:
    """The ramp saved as a grayscale file of `dtype`, 1.0 mapped to `full_scale`."""
    Image.fromarray((ramp * full_scale).astype(dtype)).save(path)
    return path
