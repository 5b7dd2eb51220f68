"""Schemas for partition and retrieval: clip, refset, retrieval, caps_per_image."""
from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING


@dataclass
class ClipConfig:
    arch: str = MISSING  # open_clip architecture name, e.g. ViT-B-32
    pretrained: Optional[str] = None  # open_clip pretrained tag or a local checkpoint path
    device: str = "auto"  # auto | cpu | cuda
    batch_size: int = 64  # images per forward pass
    num_workers: int = 2  # image-decoding worker processes
    templates: list[str] = field(default_factory=lambda: ["{}"])  # text prompt ensemble


@dataclass
class RefsetConfig:
    name: str = "full"  # full | imbalanced | small | no_partition


@dataclass
class RetrievalConfig:
    name: str = "text"  # text | image_centroid | image_knn | random
    min_score: float = 0.0  # cosine similarity below which a pool image is never taken


@dataclass
class CapsPerImageConfig:
    num_captions: int = 1  # generated texts per candidate image; images needed = total_gen / this
