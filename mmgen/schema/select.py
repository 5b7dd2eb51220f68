"""Schemas for partition and retrieval: clip, refset, retrieval, caps_per_image."""
from dataclasses import dataclass

from omegaconf import MISSING

from mmgen.schema.choices import Device, Refset


@dataclass
class ClipConfig:
    arch: str = MISSING  # open_clip architecture name, e.g. ViT-B-32, or mmgen-tiny-clip
    # "module:function" run before loading a custom architecture: it adds the model config to
    # open_clip and returns its default checkpoint (the demo's tiny CLIP); null for open_clip's own
    setup: str | None = MISSING
    pretrained: str | None = MISSING  # open_clip pretrained tag or a local checkpoint path
    device: Device = MISSING  # auto (cuda when available) | cpu | cuda
    fp16_on_cuda: bool = MISSING  # run the model in float16 when on a GPU
    batch_size: int = MISSING  # images per forward pass
    num_workers: int = MISSING  # image-decoding worker processes; 0 decodes in the main process
    templates: list[str] = MISSING  # prompt ensemble; {} = keyword
    # this model's cosine scale, which the retrieval options default to (it differs per model):
    text_match_cosine: float = MISSING  # text-image cosine from which an image plausibly shows it
    image_match_cosine: float = MISSING  # image-image cosine from which two images plausibly match
    near_duplicate_cosine: float | None = MISSING  # image-image cosine above which two are copies


@dataclass
class RefsetConfig:
    name: Refset = MISSING  # full | imbalanced | small | no_partition
    fraction: float = 0.1  # small: share of each subgroup kept (at least one sample)
    keyword: str | None = None  # no_partition: the one subgroup's keyword; null = keywords joined


@dataclass
class RetrievalConfig:
    _target_: str = MISSING  # class that scores pool images per subgroup
    name: str = MISSING  # text | image_centroid | image_knn | random (a label for logs and stats)
    min_score: float = 0.0  # score below which a pool image is never taken, even to fill a quota
    knn_k: int = 1  # image_knn: score = mean cosine to the k nearest reference images
    near_duplicate_cosine: float | None = MISSING  # pool images this close (cosine) to a reference
    #                                             or eval image are excluded; null = no check


@dataclass
class CapsPerImageConfig:
    num_captions: int = MISSING  # generated texts per candidate image; images needed = total_gen / this
