"""Schemas for filter, export and report."""
from dataclasses import dataclass


@dataclass
class FilterConfig:
    keep_fraction: float = 0.5  # share of scored samples kept
    select: str = "high"  # high | low | random: which losses are kept


@dataclass
class ExportConfig:
    format: str = "llava"  # llava | sharegpt | hf
