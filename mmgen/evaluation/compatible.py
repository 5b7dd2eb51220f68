"""Evaluate a model behind an OpenAI-compatible server (vLLM, SGLang, Ollama, LM Studio...).

Reuses the generation engine's pieces: the async client (pooled connections, no SDK retries),
the image encoder (data URLs, LRU cache, a thread pool), and the error classes with backoff
and Retry-After. `concurrency` questions are in flight at once; each answer is handed to the
writer the moment it arrives, so a killed run resumes where it stopped.

For the trained model the server must serve the adapter the train stage saved, e.g.
`vllm serve llava-hf/llava-1.5-7b-hf --enable-lora --lora-modules mmgen=outputs/NAME/train`
with `evaluate.backend.trained_model=mmgen`.
"""
from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from omegaconf import OmegaConf

from mmgen.errors import UserError
from mmgen.evaluation import Evaluator, Question, Write, ignore_unused
from mmgen.vlm.client import ChatClient, make_clients
from mmgen.vlm.errors import RequestFailed, classify, retry_delay
from mmgen.vlm.images import ImageEncoder, ImageError
from mmgen.vlm.messages import request_body

log = logging.getLogger(__name__)
BACKOFF_BASE_S, BACKOFF_MAX_S = 1.0, 30.0  # first retry wait, longest wait (Retry-After wins)


class CompatibleEvaluator(Evaluator):
    """Greedy (temperature 0) answers from a chat-completions endpoint."""

    def __init__(self, model: str | None = None, base_url: str | None = None,
                 trained: str | None = None, trained_model: str | None = None,
                 api_key_env: str = "COMPATIBLE_API_KEY", concurrency: int = 16,
                 timeout_s: float = 120.0, max_attempts: int = 5,
                 max_image_side: int | None = None, image_format: str = "png",
                 batch_size: int = 16, device: str = "auto", max_new_tokens: int = 16,
                 **other_backends_settings):
        super().__init__(trained, batch_size, "cpu", max_new_tokens)
        ignore_unused("compatible", other_backends_settings)
        if not base_url:
            raise UserError("evaluate.backend.base_url is empty: give the server's address, "
                            "e.g. evaluate.backend.base_url=http://localhost:8000/v1")
        self.served_model = trained_model if self.trained else model
        if not self.served_model:
            key = "trained_model" if self.trained else "model"
            raise UserError(f"evaluate.backend.{key} is empty: give the name the server serves "
                            + ("the trained adapter under (vLLM: --lora-modules NAME=<out_dir>/"
                               "train)" if self.trained else "the base model under"))
        self.base_url, self.api_key_env = base_url, api_key_env
        self.concurrency, self.timeout_s = max(1, concurrency), timeout_s
        self.max_attempts = max(1, max_attempts)
        self.max_image_side, self.image_format = max_image_side or 2048, image_format
        self.failures: dict[str, str] = {}  # question id -> why it got no answer

    @property
    def name(self) -> str:
        return f"{self.served_model}@{self.base_url}"

    def predict(self, questions: Sequence[Question], image_root: Path, write: Write) -> None:
        """Answer every question; those that still fail after retries land in `failures`."""
        self.failures = {}
        asyncio.run(self._predict_all(list(questions), image_root, write))

    async def _predict_all(self, questions: list[Question], image_root: Path,
                           write: Write) -> None:
        backend = OmegaConf.create({"name": "compatible", "api_key_env": self.api_key_env})
        chat = ChatClient(make_clients(backend, self.base_url, self.concurrency), self.timeout_s)
        encoder = ImageEncoder(image_root, self.max_image_side, self.image_format)
        pending = iter(questions)
        rng = random.Random(0)  # backoff jitter only
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="mmgen-eval-encode") as pool:
            async def worker() -> None:
                for question in pending:  # one event loop thread: no lock needed
                    try:
                        answer = await self._ask(chat, encoder, pool, question, rng)
                    except (RequestFailed, ImageError) as failure:
                        self.failures[question.id] = str(failure)
                        continue
                    write(question, answer)

            try:
                await asyncio.gather(*(worker() for _ in range(self.concurrency)))
            finally:
                await chat.aclose()

    async def _ask(self, chat: ChatClient, encoder: ImageEncoder, pool: ThreadPoolExecutor,
                   question: Question, rng: random.Random) -> str:
        """One question, retried on rate limits, server errors, timeouts and dropped links."""
        content: list[dict] = []
        if question.image:
            image = encoder.cached(question.image) or await asyncio.get_running_loop(
            ).run_in_executor(pool, encoder.encode, question.image)
            content.append({"type": "image_url", "image_url": {"url": image.url}})
        content.append({"type": "text", "text": question.prompt})
        body = request_body(self.served_model, [{"role": "user", "content": content}],
                            temperature=0.0, max_tokens=self.max_new_tokens)
        for attempt in range(1, self.max_attempts + 1):
            try:
                completion = await chat.complete(body)
                return (completion.text or "").strip()
            except Exception as err:  # classify re-raises what is not a request failure
                failure = classify(err)  # and raises FatalBackendError on 401/403/404
                if not failure.retryable or attempt == self.max_attempts:
                    raise RequestFailed(failure.error_class, f"{failure} (attempt {attempt} of "
                                        f"{self.max_attempts})") from err
                await asyncio.sleep(retry_delay(attempt, BACKOFF_BASE_S, BACKOFF_MAX_S,
                                                failure.retry_after, rng))
        raise AssertionError("unreachable")
