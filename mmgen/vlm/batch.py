"""backend=openai_batch: export request files split at the provider's limits, upload and submit
them with the openai client's files and batches APIs, poll, and import the results into the same
generations.jsonl the online path writes. <out_dir>/batch/batches.json remembers every file and
batch, so a rerun polls and imports instead of submitting again.
"""
from __future__ import annotations

import itertools
import json
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import openai
from omegaconf import DictConfig, OmegaConf

from mmgen.contracts import AppendLog, atomic_writer, iter_jsonl, read_json, write_json
from mmgen.vlm.client import api_key
from mmgen.vlm.images import ImageError, encoder_for
from mmgen.vlm.messages import (
    ReplyFormatError,
    build_messages,
    image_paths,
    parse_items,
    request_body,
)
from mmgen.vlm.resume import BATCH_DIR, LOG_NAME, PROMPTS_NAME, LogState, pending_prompts

log = logging.getLogger(__name__)
STATE_NAME = "batches.json"
ENDPOINT = "/v1/chat/completions"
TERMINAL = {"completed", "failed", "expired", "cancelled"}
ENCODE_CHUNK = 256  # prompts encoded per thread-pool round; bounds memory when streaming


class _SplitWriter:
    """Writes lines into numbered files, starting a new one before a limit would be passed."""

    def __init__(self, folder: Path, stem: str, max_requests: int, max_bytes: int):
        self.folder, self.stem = folder, stem
        self.max_requests, self.max_bytes = max_requests, max_bytes
        self.files: list[dict] = []
        self._stack = ExitStack()
        self._handle = None

    def write(self, custom_id: str, line: bytes) -> None:
        if len(line) > self.max_bytes:
            raise ValueError(f"prompt {custom_id}: its request is {len(line):,} bytes, more than "
                             f"backend.batch.max_bytes={self.max_bytes:,}; lower "
                             "generate.image_max_side or use image_format=jpeg")
        current = self.files[-1] if self.files else None
        if current is None or current["requests"] >= self.max_requests \
                or current["bytes"] + len(line) > self.max_bytes:
            self._stack.close()  # renames the finished file into place
            path = self.folder / f"{self.stem}-{len(self.files):03d}.jsonl"
            self._handle = self._stack.enter_context(atomic_writer(path, "wb"))
            self.files.append({"path": path.name, "requests": 0, "bytes": 0})
            current = self.files[-1]
        self._handle.write(line)
        current["requests"] += 1
        current["bytes"] += len(line)

    def close(self) -> list[dict]:
        self._stack.close()
        return self.files


def export(cfg: DictConfig, out: Path, state: LogState, generations: AppendLog, stem: str) -> list[dict]:
    """Write request files for the pending prompts; unreadable images fail their prompt now."""

    gen, limits = cfg.generate, cfg.backend.batch
    encoder = encoder_for(cfg)
    model = cfg.backend.deployment or cfg.backend.model
    writer = _SplitWriter(out / BATCH_DIR, stem, limits.max_requests, limits.max_bytes)

    def encode(prompt: dict) -> tuple[dict, list | str]:
        try:
            return prompt, [encoder.encode(path) for path in image_paths(prompt)]
        except ImageError as err:
            return prompt, str(err)

    prompts = pending_prompts(out / PROMPTS_NAME, state.done(gen.retry_failed))
    with ThreadPoolExecutor(max(1, gen.encode_threads)) as pool:
        while chunk := list(itertools.islice(prompts, ENCODE_CHUNK)):
            for prompt, images in pool.map(encode, chunk):
                if isinstance(images, str):
                    generations.append(failed_record(prompt["id"], "image", images, cfg, 0))
                    continue
                body = request_body(model, build_messages(prompt, images, gen.image_detail),
                                    gen.temperature, gen.max_tokens)
                line = json.dumps({"custom_id": prompt["id"], "method": "POST", "url": ENDPOINT,
                                   "body": body}, ensure_ascii=False, separators=(",", ":"))
                writer.write(prompt["id"], (line + "\n").encode())
    files = writer.close()
    log.info("batch: wrote %d requests in %d files under %s", sum(f["requests"] for f in files),
             len(files), out / BATCH_DIR)
    return files


def failed_record(prompt_id: str, error_class: str, error: str, cfg: DictConfig, attempts: int,
                  reply: str | None = None, usage: dict | None = None) -> dict:
    return {"id": prompt_id, "status": "failed", "reply": reply, "items": [],
            "usage": usage or {"prompt_tokens": 0, "completion_tokens": 0}, "attempts": attempts,
            "error_class": error_class, "error": error, "model": cfg.backend.model}


def import_results(cfg: DictConfig, results_path: Path, done: set[str], prompt_ids: set[str],
                   generations: AppendLog) -> Counter:
    """Append one record per new result line (ok, or failed with its class); returns counts."""
    mode = OmegaConf.to_container(cfg.mode, resolve=True)
    counts: Counter = Counter()
    for line in iter_jsonl(results_path):
        prompt_id = line.get("custom_id")
        if prompt_id not in prompt_ids or prompt_id in done:
            counts["skipped"] += 1
            continue
        response = line.get("response") or {}
        body = response.get("body") or {}
        usage = {key: int((body.get("usage") or {}).get(key) or 0)
                 for key in ("prompt_tokens", "completion_tokens")}
        if response.get("status_code") == 200:
            text = body["choices"][0]["message"].get("content")
            try:
                items, _ = parse_items(text, mode, cfg.min_gen_per_candidate)
                record = {**failed_record(prompt_id, "", "", cfg, 1, text, usage),
                          "status": "ok", "items": items, "error_class": None, "error": None}
            except ReplyFormatError as err:
                record = failed_record(prompt_id, "parse", f"{err} (Batch API: no format-fixing "
                                       "call; retry online with generate.retry_failed=true)",
                                       cfg, 1, text, usage)
        else:
            status = response.get("status_code")
            error = (body.get("error") or line.get("error") or {}).get("message", "no response")
            kind = "rate_limit" if status == 429 else "server" if (status or 500) >= 500 \
                else "bad_request"
            record = failed_record(prompt_id, kind, f"HTTP {status}: {error}", cfg, 1)
        generations.append(record)
        done.add(prompt_id)
        counts[record["status"]] += 1
    return counts


def run_batch(cfg: DictConfig, out: Path, state: LogState) -> dict:
    """Import local results, or export + submit + poll + import; returns this run's counts."""
    settings = cfg.backend.batch
    folder = out / BATCH_DIR
    folder.mkdir(exist_ok=True)
    prompt_ids = {prompt["id"] for prompt in iter_jsonl(out / PROMPTS_NAME)}
    done = state.done(cfg.generate.retry_failed)
    counts: Counter = Counter()
    with AppendLog(out / LOG_NAME) as generations:
        if settings.results:  # results downloaded by hand: import only
            for path in settings.results:
                counts += import_results(cfg, Path(path), done, prompt_ids, generations)
            return dict(counts)
        state_path = folder / STATE_NAME
        batches = read_json(state_path)["files"] if state_path.exists() else []
        if all(entry.get("imported") for entry in batches):  # nothing in flight: a new round
            stem = f"requests-r{len({e['path'].split('-')[1] for e in batches}) + 1}"
            batches += export(cfg, out, state, generations, stem)
            write_json(state_path, {"files": batches})
        if not settings.submit:
            log.info("batch: request files are in %s; upload them yourself, or rerun with "
                     "backend.batch.submit=true", folder)
            return {"exported": sum(e["requests"] for e in batches if not e.get("imported"))}
        client = openai.OpenAI(api_key=api_key(cfg.backend), base_url=cfg.backend.base_url,
                               max_retries=3)
        submit(client, folder, batches, state_path, settings)
        if settings.wait:
            counts = poll_and_import(cfg, client, folder, batches, state_path, done, prompt_ids,
                                     generations)
    return dict(counts)


def submit(client, folder: Path, batches: list[dict], state_path: Path, settings) -> None:
    """Upload and submit every file that has no batch yet, saving the state after each."""
    for entry in batches:
        if entry.get("batch_id") or entry.get("imported") or not entry["requests"]:
            continue
        with (folder / entry["path"]).open("rb") as handle:
            entry["file_id"] = client.files.create(file=handle, purpose="batch").id
        batch = client.batches.create(input_file_id=entry["file_id"], endpoint=ENDPOINT,
                                      completion_window=settings.completion_window)
        entry.update(batch_id=batch.id, status=batch.status)
        write_json(state_path, {"files": batches})
        log.info("batch: submitted %s (%d requests) as %s", entry["path"], entry["requests"], batch.id)


def poll_and_import(cfg, client, folder, batches, state_path, done, prompt_ids, generations) -> Counter:
    """Poll until every batch ends (or max_wait_s), importing each as it completes."""
    settings = cfg.backend.batch
    counts: Counter = Counter()
    deadline = time.monotonic() + settings.max_wait_s
    while True:
        waiting = 0
        for entry in batches:
            if entry.get("imported") or not entry.get("batch_id"):
                continue
            batch = client.batches.retrieve(entry["batch_id"])
            entry.update(status=batch.status, output_file_id=batch.output_file_id,
                         error_file_id=batch.error_file_id)
            if batch.status not in TERMINAL:
                waiting += 1
                continue
            for kind in ("output", "error"):
                file_id = entry.get(f"{kind}_file_id")
                if file_id:
                    path = folder / entry["path"].replace("requests", kind)
                    with atomic_writer(path, "wb") as handle:
                        handle.write(client.files.content(file_id).content)
                    counts += import_results(cfg, path, done, prompt_ids, generations)
            entry["imported"] = True
            log.info("batch: %s ended %s; imported", entry["batch_id"], batch.status)
        write_json(state_path, {"files": batches})
        if not waiting:
            return counts
        if time.monotonic() > deadline:
            log.warning("batch: %d batches still running after %.0f s; rerun to keep polling",
                        waiting, settings.max_wait_s)
            return counts
        time.sleep(settings.poll_s)
