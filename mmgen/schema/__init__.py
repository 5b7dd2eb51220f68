"""The root config schema: every key a stage reads, typed, so typos fail at compose time."""
from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from mmgen.schema.common import DatasetConfig, PathsConfig, ShardConfig
from mmgen.schema.curation import ExportConfig, FilterConfig, ReportConfig
from mmgen.schema.evaluate import EvaluateConfig
from mmgen.schema.generation import BackendConfig, GenerateConfig
from mmgen.schema.prompting import IclConfig, ModeConfig
from mmgen.schema.select import CapsPerImageConfig, ClipConfig, RefsetConfig, RetrievalConfig
from mmgen.schema.train import TrainConfig


@dataclass
class Config:
    name: str = "default"  # experiment name; a single run writes to outputs/<name>/
    total_gen: int = 1000  # generated training items wanted in total
    min_gen_per_candidate: int = 1  # items asked of the teacher per prompt
    seed: int = 0  # seeds every random choice; same seed, same files
    task_file: str | None = None  # start from an existing seed-format task file instead
    check_images: bool = True  # verify every image exists before anything is sent anywhere
    only: bool = False  # run this stage alone, on the upstream files already in paths.out_dir
    paths: PathsConfig = field(default_factory=PathsConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    shard: ShardConfig = field(default_factory=ShardConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    refset: RefsetConfig = field(default_factory=RefsetConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    caps_per_image: CapsPerImageConfig = field(default_factory=CapsPerImageConfig)
    mode: ModeConfig = field(default_factory=ModeConfig)
    icl: IclConfig = field(default_factory=IclConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)


# key -> (lowest, highest) allowed value; None = unbounded. keep_fraction must also exceed 0.
RANGES = {"total_gen": (1, None), "min_gen_per_candidate": (1, None),
          "filter.keep_fraction": (0.0, 1.0), "shard.count": (1, None),
          "generate.jpeg_quality": (1, 95), "generate.concurrency": (1, None),
          "generate.max_attempts": (1, None), "generate.image_max_side": (16, None),
          "icl.num_examples": (0, None), "icl.max_turn_chars": (1, None),
          "caps_per_image.num_captions": (1, None), "clip.batch_size": (1, None),
          "filter.batch_size": (1, None), "refset.fraction": (0.0, 1.0)}


def check_ranges(cfg) -> None:
    """Every value that must lie in a range, checked before any stage runs."""
    from omegaconf import OmegaConf

    from mmgen.errors import UserError

    bounds = {**RANGES, "shard.index": (0, cfg.shard.count - 1)}
    for key, (low, high) in bounds.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        if (low is not None and value < low) or (high is not None and value > high):
            span = f"at least {low}" if high is None else f"between {low} and {high}"
            raise UserError(f"{key}={value} must be {span}")
    if cfg.filter.keep_fraction == 0:
        raise UserError("filter.keep_fraction=0 would keep no sample: use a share in (0, 1]")


def register() -> None:
    """Register the root schema as `mmgen_schema`, the first entry of conf/config.yaml's defaults."""
    ConfigStore.instance().store(name="mmgen_schema", node=Config)
