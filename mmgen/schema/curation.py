"""Schemas for filter, export and report."""
from dataclasses import dataclass, field

from omegaconf import MISSING

from mmgen.schema.choices import Device, Dtype, ExportFormat, Select

# A question "asks for a number" when it matches this (case-insensitive) and lists no options.
NUMERIC_QUESTION_PATTERN = (
    r"\b(how (many|much)|what (is|was|are|were) the (value|number|total|sum|difference|average|mean"
    r"|count|percentage|ratio)|what percent(age)?)\b"
)


@dataclass
class ScorerConfig:
    _target_: str = "mmgen.demo.scorer.DemoTargetScorer"  # scorer class (mmgen.scoring.*)
    model: str | None = None  # hub id or local folder; demo scorer: null = the committed model
    model_class: str | None = None  # transformers class name; null = AutoModelForImageTextToText
    processor: str | None = None  # processor hub id or folder when it differs from `model`
    adapter: str | None = None  # optional PEFT (LoRA) adapter folder applied on top of `model`
    dtype: Dtype = Dtype.auto  # auto | float32 | float16 | bfloat16 (auto: bf16 on cuda, else fp32)
    max_image_side: int | None = None  # downscale images whose longer side exceeds this, pixels


@dataclass
class ChecksConfig:
    exact_duplicates: bool = True  # drop a repeated question about the same image
    # word-set similarity 0..1 at which a question about the same image is a repeat; null = off
    near_duplicates: float | None = 0.9
    choices: bool = True  # a multiple-choice answer must be one of the options the question lists
    numeric: bool = True  # a question asking for a number must get an answer that parses as one
    numeric_question_pattern: str = NUMERIC_QUESTION_PATTERN  # regex: questions asking a number
    min_question_chars: int | None = 3  # shorter questions are dropped; null = no bound
    max_question_chars: int | None = 2000  # longer questions are dropped; null = no bound
    min_answer_chars: int | None = 1  # shorter answers are dropped; null = no bound
    max_answer_chars: int | None = 4000  # longer answers are dropped; null = no bound


@dataclass
class FilterConfig:
    keep_fraction: float = MISSING  # share of scored samples kept, 0..1
    select: Select = MISSING  # high | low | random: highest losses (MM-Gen), lowest, or at random
    batch_size: int = MISSING  # samples per forward pass (speed only)
    device: Device = MISSING  # auto | cpu | cuda (speed only)
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    checks: ChecksConfig = field(default_factory=ChecksConfig)


@dataclass
class ExportConfig:
    format: ExportFormat = MISSING  # llava | sharegpt | hf
    copy_images: bool = MISSING  # hard-link (or copy) the kept images into the export folder
    name: str = MISSING  # dataset name written into LLaMA-Factory's dataset_info.json


@dataclass
class ReportConfig:
    gallery_per_subgroup: int = 12  # gallery cards per subgroup, spread over the loss ranking
    thumbnail_side: int = 160  # longer side of the embedded JPEG thumbnails, pixels
    histogram_bins: int = 20  # bars in the score histogram
