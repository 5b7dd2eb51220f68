"""Schemas for generation: backend and generate."""
from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING


@dataclass
class BackendConfig:
    name: str = MISSING  # openai | azure | compatible | demo_teacher | dry_run | openai_batch
    model: str = "gpt-4o"  # model or deployment name sent with each request
    base_url: Optional[str] = None  # server address for OpenAI-compatible endpoints
    api_key_env: str = "OPENAI_API_KEY"  # environment variable holding the key; never the key


@dataclass
class GenerateConfig:
    concurrency: int = 16  # requests in flight at once
