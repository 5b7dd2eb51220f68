"""Schema of the train stage (conf/train/*.yaml): which data, which trainer, how long."""
from dataclasses import dataclass, field

from omegaconf import MISSING

from mmgen.schema.choices import Choice


class TrainData(Choice):
    """Which samples the target model is fine-tuned on."""
    filtered = "filtered"  # filtered.json: MM-Gen's kept samples
    unfiltered = "unfiltered"  # data.json: everything generated, before filtering
    skyline = "skyline"  # dataset.train: the dataset's own training set


@dataclass
class LoraConfig:
    """LoRA adapter shape (hf trainer); every value comes from conf/train/hf.yaml."""
    r: int = MISSING  # adapter rank
    alpha: int = MISSING  # scaling numerator: the update is scaled by alpha / r
    dropout: float = MISSING  # dropout on the adapter's input, 0..1
    target_modules: str = MISSING  # regex, full match, of the Linear layers that get an adapter
    modules_to_save: list[str] | None = None  # modules trained in full and saved (projector)


@dataclass
class TrainerConfig:
    _target_: str = MISSING  # trainer class (mmgen.training.*), built with hydra instantiate
    # base model: demo: a checkpoint, null = the committed base; hf: hub id or local folder
    model: str | None = None
    # hf trainer only (the demo trainer warns when they are set); null = the default in brackets
    model_class: str | None = None  # transformers class name [AutoModelForImageTextToText]
    processor: str | None = None  # processor hub id or folder when it differs from `model`
    dtype: str | None = None  # auto | float32 | bfloat16 | float16 [auto: bf16 on cuda, else fp32]
    max_image_side: int | None = None  # downscale images whose longer side exceeds this, pixels
    micro_batch_size: int | None = None  # samples per device per forward (memory only) [all]
    lora: LoraConfig | None = None  # adapter shape; see LoraConfig
    warmup_ratio: float | None = None  # share of steps with a linear warm-up, 0..1 [0]
    weight_decay: float | None = None  # AdamW weight decay [0]
    gradient_checkpointing: bool | None = None  # recompute activations (memory only) [false]
    num_workers: int | None = None  # data loader processes decoding images (speed only) [0]


@dataclass
class TrainConfig:
    data: TrainData = MISSING  # filtered | unfiltered | skyline
    epochs: float = MISSING  # passes over the training samples
    max_steps: int | None = MISSING  # stop after this many optimizer steps; null = epochs decide
    batch_size: int = MISSING  # samples per optimizer step
    lr: float = MISSING  # peak learning rate
    save_every_steps: int = MISSING  # steps between resumable checkpoints in train/
    log_every_steps: int = MISSING  # steps between loss records in train/log.jsonl
    device: str = MISSING  # auto | cpu | cuda (speed only)
    progress: bool = MISSING  # show a progress bar (speed only)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
