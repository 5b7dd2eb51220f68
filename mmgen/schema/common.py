"""Schemas of the config groups every stage reads: paths, dataset, shard."""
from dataclasses import dataclass

from omegaconf import MISSING

from mmgen.schema.evaluate import Metric
from mmgen.schema.source import SourceConfig


@dataclass
class PathsConfig:
    out_dir: str = MISSING  # where this experiment's files land (set by conf/paths)
    cache_dir: str = MISSING  # shared, content-keyed results reused across experiments
    demo_dir: str = MISSING  # where the offline demo domain is built


@dataclass
class DatasetConfig:
    name: str = MISSING  # short name used in logs and output names
    root: str = MISSING  # input folder; every image path in the data files is relative to it
    reference: str = MISSING  # reference set (LLaVA style), relative to root
    pool: str = MISSING  # unlabelled images: folder, list file, tar shards or hf://PATH:SPLIT:COL
    eval: str | None = MISSING  # optional held-out set excluded from retrieval, relative to root
    metric: Metric = MISSING  # how eval answers are judged (relaxed_accuracy, multiple_choice...)
    train: str | None = MISSING  # optional own training set (train.data=skyline), relative to root
    description: str = MISSING  # one line naming the task; fills the prompt templates
    keywords: list[str] = MISSING  # subgroup keywords for zero-shot partition
    builder: str | None = None  # "module:function" that builds missing inputs at root (the demo)
    source: SourceConfig | None = None  # where `mmgen.prepare` reads the benchmark from


@dataclass
class ShardConfig:
    index: int = 0  # which slice this job handles, 0-based
    count: int = 1  # how many slices the work is split into; 1 means no sharding
