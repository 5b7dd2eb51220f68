"""Schemas for generation: backend (which VLM endpoint) and generate (how requests are sent)."""
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from mmgen.schema.choices import BackendName, ImageDetail, ImageFormat


@dataclass
class BatchConfig:
    """OpenAI Batch API (backend=openai_batch): export, submit, poll, import."""

    max_requests: int = 50000  # requests per uploaded file (the provider's limit)
    max_bytes: int = 200_000_000  # bytes per uploaded file (the provider's limit: 200 MB)
    submit: bool = True  # false: only write the request files under <out_dir>/batch/
    wait: bool = True  # poll until every batch ends, then import; false: rerun later to poll
    poll_s: float = 60.0  # seconds between polls
    max_wait_s: float = 90000.0  # seconds to keep polling before giving up (rerun resumes)
    completion_window: str = "24h"  # the only window the provider offers
    results: list[str] = field(default_factory=list)  # local result files to import instead


@dataclass
class BackendConfig:
    name: BackendName = MISSING  # openai | azure | compatible | demo_teacher | dry_run | openai_batch
    model: str = MISSING  # model name sent with each request; also picks generate.prices
    base_url: str | None = None  # server address for OpenAI-compatible endpoints (.../v1)
    api_key_env: str = "OPENAI_API_KEY"  # environment variable holding the key; never the key
    # true: send the OpenAI key (OPENAI_API_KEY's value) to a base_url that is not
    # api.openai.com, e.g. your own proxy to OpenAI; false refuses, so a key cannot leak by a typo
    allow_key_to_custom_base_url: bool = False
    require_key: bool = MISSING  # false: servers that need none (a local vLLM) may go without
    # Azure OpenAI
    azure_endpoint: str | None = None  # https://RESOURCE.openai.azure.com
    deployment: str | None = None  # Azure deployment name; null uses `model`
    api_version: str | None = None  # Azure REST API version, e.g. 2024-10-21
    entra_id: bool = False  # Azure: authenticate with an Entra ID token (needs azure-identity)
    price_scale: float = 1.0  # multiplies generate.prices (the Batch API costs half)
    # "module:function": a context manager that starts a local server for the run and yields
    # its base URL (the demo teacher); null: call base_url
    server: str | None = None
    # demo_teacher: mmgen.demo.teacher.TeacherConfig fields (latency_s, rate_429, ...)
    teacher: dict[str, Any] = field(default_factory=dict)
    inline_images: bool = False  # dry_run: write full base64 images into requests.jsonl
    batch: BatchConfig = field(default_factory=BatchConfig)


@dataclass
class ModelPrice:
    input: float = 0.0  # USD per 1M prompt tokens
    output: float = 0.0  # USD per 1M completion tokens


@dataclass
class GenerateConfig:
    concurrency: int = MISSING  # requests in flight at once
    rpm: float | None = MISSING  # requests per minute limit; null: none
    tpm: float | None = MISSING  # tokens per minute limit (prompt estimate + max_tokens); null: none
    timeout_s: float = MISSING  # seconds one HTTP request may take
    max_attempts: int = MISSING  # HTTP attempts per call before the prompt fails
    backoff_base_s: float = MISSING  # first retry waits about this long; doubles each attempt
    backoff_max_s: float = MISSING  # longest wait between attempts (Retry-After may ask for more)
    format_fix_tries: int = MISSING  # follow-up calls asking to fix a reply that is not the mode's JSON
    temperature: float | None = MISSING  # sampling temperature; null: the server's default
    max_tokens: int | None = MISSING  # completion token cap per call; null: the server's default
    retry_failed: bool = MISSING  # a rerun also retries prompts whose last record is `failed`
    max_cost_usd: float | None = MISSING  # stop sending once the log's total cost reaches this
    image_max_side: int = MISSING  # px; larger images are downscaled so the longer side fits
    image_format: ImageFormat = MISSING  # jpeg | png: encoding of the base64 data URLs
    jpeg_quality: int = MISSING  # 1-95, for image_format=jpeg
    image_detail: ImageDetail = MISSING  # low | high | auto: the `detail` sent with each image
    image_cache: int = MISSING  # encoded images kept in memory (in-context images recur)
    encode_threads: int = MISSING  # threads decoding and encoding images
    progress: bool = MISSING  # show a tqdm bar
    prices: dict[str, ModelPrice] = MISSING  # model -> USD per 1M tokens
