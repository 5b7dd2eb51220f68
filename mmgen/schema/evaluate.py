"""Schema of the evaluate stage (conf/evaluate/*.yaml) and of a dataset's metric."""
from dataclasses import dataclass, field

from omegaconf import MISSING

from mmgen.schema.choices import Choice, Device, Dtype, ImageFormat


class Metric(Choice):
    """How an eval answer is judged (mmgen/metrics.py)."""
    relaxed_accuracy = "relaxed_accuracy"  # ChartQA's official rule: numbers within 5%
    multiple_choice = "multiple_choice"  # the option a free-text answer picks (AI2D, SpatialMap)
    exact_match = "exact_match"  # equal after normalising case, spaces, trailing punctuation


class EvalModel(Choice):
    """Which target model answers the eval set."""
    trained = "trained"  # the model the train stage made (train/)
    base = "base"  # the untrained target model


@dataclass
class EvaluatorConfig:
    """One backend's settings; each backend class reads its own and ignores the rest."""
    _target_: str = MISSING  # backend class (mmgen.evaluation.*), built with hydra instantiate
    # the untrained target model: demo: a checkpoint (null = the committed base model);
    # hf: hub id or local folder; compatible: the name the server gives it
    model: str | None = None
    # hf
    model_class: str | None = None  # transformers class name; null = AutoModelForImageTextToText
    processor: str | None = None  # processor hub id or folder when it differs from `model`
    dtype: Dtype = Dtype.auto  # auto | float32 | float16 | bfloat16 (auto: bf16 on cuda, else fp32)
    max_image_side: int | None = None  # downscale images whose longer side exceeds this, pixels
    # compatible
    base_url: str | None = None  # server address ending in /v1
    trained_model: str | None = None  # the name the server gives the trained adapter
    api_key_env: str = "COMPATIBLE_API_KEY"  # environment variable with the key, if one is needed
    concurrency: int = 16  # requests in flight at once
    timeout_s: float = 120.0  # seconds one HTTP request may take
    max_attempts: int = 5  # HTTP attempts per question before it counts as failed
    image_format: ImageFormat = ImageFormat.png  # png | jpeg: encoding of the images sent (png keeps chart text sharp)


@dataclass
class EvaluateConfig:
    model: EvalModel = MISSING  # trained | base
    predictions: str | None = MISSING  # JSONL of {id, prediction} made elsewhere: scored, no model
    prompt: str = MISSING  # the text the model sees; {question} is the eval question
    max_new_tokens: int = MISSING  # answer length cap: tokens (hf, compatible), characters (demo)
    batch_size: int = MISSING  # questions per forward pass (speed only)
    device: Device = MISSING  # auto | cpu | cuda (speed only)
    resamples: int = MISSING  # bootstrap resamples behind each 95% confidence interval
    progress: bool = MISSING  # show a progress bar (speed only)
    paper_row: str | None = MISSING  # "TASK: ROW" of mmgen/paper_results.jsonl this run reproduces
    backend: EvaluatorConfig = field(default_factory=EvaluatorConfig)
