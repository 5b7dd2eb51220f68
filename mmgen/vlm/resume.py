"""The generations log as the resume point: which prompts are done, whether the log still
belongs to these prompts, and data.json rebuilt from it (never appended to, so never duplicated).
"""
from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mmgen import modes
from mmgen.contracts import (
    AppendLog,
    iter_jsonl,
    iter_prompts,
    validate_generation,
    write_dataset,
    write_json,
)
from mmgen.stage import MARKER_DIR
from mmgen.stages import RUNTIME_KEYS, STAGES
from mmgen.vlm.cost import Prices

log = logging.getLogger(__name__)

LOG_NAME, DATA_NAME, PROMPTS_NAME = "generations.jsonl", "data.json", "prompts.jsonl"
KEY_NAME = "generations.key.json"  # under .mmgen/: what the log was made from
BATCH_DIR = "batch"  # Batch API request and result files (mmgen/vlm/batch.py)


def generate_settings(cfg: DictConfig) -> str:
    """A hash of the generate stage's own result-shaping keys (runtime keys left out)."""
    values = {}
    for key in STAGES["generate"].keys:
        value = OmegaConf.select(cfg, key)
        if OmegaConf.is_config(value):
            value = {name: item for name, item in OmegaConf.to_container(value, resolve=True)
                     .items() if f"{key}.{name}" not in RUNTIME_KEYS}
        values[key] = value
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def log_key(cfg: DictConfig, prompts_path: Path) -> dict:
    """What a log's records depend on: the prompts file's bytes and the generate settings
    (not upstream fingerprints: prompts that come out byte-identical keep their log)."""
    digest = hashlib.sha256()
    with prompts_path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"prompts_sha256": digest.hexdigest(), "settings": generate_settings(cfg)}


def prepare_log(cfg: DictConfig, out: Path) -> Path:
    """Keep the log if it was made from these prompts and settings, else move it aside."""
    log_path, key_path, batch_dir = out / LOG_NAME, out / MARKER_DIR / KEY_NAME, out / BATCH_DIR
    key = log_key(cfg, out / PROMPTS_NAME)
    old_key = read_key(key_path)
    if old_key != key:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        if log_path.exists():
            aside = _free_name(out, f"generations.superseded-{stamp}", ".jsonl")
            log_path.rename(aside)
            log.warning("%s was made from other prompts or settings (%s); moved it to %s and "
                        "starting a fresh log", log_path, _changed(old_key, key), aside.name)
        if batch_dir.exists():  # its requests and results belong to the old prompts
            aside = _free_name(out, f"batch.superseded-{stamp}", "")
            batch_dir.rename(aside)
            log.warning("%s holds Batch API files for other prompts or settings; moved it to %s "
                        "(batches still running there are no longer polled)", batch_dir,
                        aside.name)
    write_json(key_path, key, indent=None)  # atomic: a kill never leaves a torn key
    return log_path


def read_key(key_path: Path) -> dict | None:
    """What the log was made from, or None when that is unknown (no key, or an unreadable one)."""
    try:
        key = json.loads(key_path.read_text())
        if isinstance(key, dict):
            return key
    except FileNotFoundError:
        return None
    except ValueError:
        pass
    log.warning("%s is unreadable; treating the log as made from unknown prompts", key_path)
    return None


def _free_name(folder: Path, stem: str, suffix: str) -> Path:
    """folder/stem+suffix, or stem-2, stem-3... if taken: a move aside never overwrites."""
    path, number = folder / f"{stem}{suffix}", 1
    while path.exists():
        number += 1
        path = folder / f"{stem}-{number}{suffix}"
    return path


def _changed(old: dict | None, new: dict) -> str:
    if old is None:
        return "no record of what it was made from"
    return ", ".join(name for name in new if old.get(name) != new[name]) + " changed"


@dataclass
class LogState:
    """The latest record's status per prompt id, and totals over the log's latest records."""

    status: dict[str, str] = field(default_factory=dict)
    error_class: dict[str, str] = field(default_factory=dict)
    usage: dict[str, tuple[int, int]] = field(default_factory=dict)
    records: int = 0  # lines in the log (more than ids when failed prompts were retried)

    def done(self, retry_failed: bool) -> set[str]:
        """Ids a run skips: `ok` ones, and `failed` ones unless retry_failed."""
        return {pid for pid, status in self.status.items()
                if status == "ok" or not retry_failed}

    def totals(self, prices: Prices) -> dict:
        """Counts per status and final error class, tokens and cost over the log."""
        tokens_in = sum(usage[0] for usage in self.usage.values())
        tokens_out = sum(usage[1] for usage in self.usage.values())
        return {"ok": sum(1 for s in self.status.values() if s == "ok"),
                "failed": sum(1 for s in self.status.values() if s == "failed"),
                "errors": dict(Counter(self.error_class.values())), "log_records": self.records,
                "tokens_in": tokens_in, "tokens_out": tokens_out,
                "cost_usd": round(self.spent(prices), 6)}

    def spent(self, prices: Prices) -> float:
        return sum(prices.cost(*usage) for usage in self.usage.values())


def scan_log(log_path: Path) -> LogState:
    """Read the log's ids, statuses and usage (not the replies); a torn last line is ignored."""
    state = LogState()
    if not log_path.exists():
        return state
    for line_number, record in enumerate(iter_jsonl(log_path, tolerate_torn_tail=True), start=1):
        validate_generation(record, log_path, line_number)
        pid = record["id"]
        state.records += 1
        state.status[pid] = record["status"]
        usage = record.get("usage") or {}
        previous = state.usage.get(pid, (0, 0))  # a retried prompt paid for every try
        state.usage[pid] = (previous[0] + int(usage.get("prompt_tokens") or 0),
                            previous[1] + int(usage.get("completion_tokens") or 0))
        if record["status"] == "failed":
            state.error_class[pid] = record["error_class"]
        else:
            state.error_class.pop(pid, None)
    return state


def pending_prompts(prompts_path: Path, done: set[str]) -> Iterator[dict]:
    """Prompt records not yet done, streamed in file order."""
    return (prompt for prompt in iter_prompts(prompts_path) if prompt["id"] not in done)


def count_pending(prompts_path: Path, done: set[str]) -> tuple[int, int]:
    """(prompts in the file, prompts not yet done)."""
    total = pending = 0
    for prompt in iter_jsonl(prompts_path):
        total += 1
        pending += prompt["id"] not in done
    return total, pending


def latest_items(log_path: Path) -> dict[str, tuple[list[dict], str]]:
    """(items, model) of every prompt whose latest record is ok."""
    items: dict[str, tuple[list[dict], str]] = {}
    if not log_path.exists():
        return items
    for record in iter_jsonl(log_path, tolerate_torn_tail=True):
        if record["status"] == "ok":
            items[record["id"]] = (record["items"], record.get("model"))
        else:
            items.pop(record["id"], None)
    return items


def write_data(cfg: DictConfig, out: Path) -> int:
    """Rebuild data.json from prompts.jsonl and the log, atomically; returns the sample count."""
    finished = latest_items(out / LOG_NAME)
    mode_cfg = OmegaConf.to_container(cfg.mode, resolve=True)
    description = cfg.dataset.description
    samples = []
    for prompt in iter_jsonl(out / PROMPTS_NAME):
        if prompt["id"] not in finished:
            continue
        items, model = finished.pop(prompt["id"])
        for item_index, item in enumerate(items):
            conversations = modes.training_conversations(mode_cfg, item, description)
            for variant, conversation in enumerate(conversations):
                sample = {"id": f"{prompt['id']}-{item_index}-{variant}"}
                if prompt.get("candidate_image"):
                    sample["image_1"] = prompt["candidate_image"]
                conversation = modes.place_image_tag(conversation, "image_1" in sample)
                sample.update(conversations=conversation, keyword=prompt["keyword"],
                              icl_indices=prompt["icl_indices"], prompt_id=prompt["id"],
                              candidate_score=prompt.get("candidate_score"), model=model)
                samples.append(sample)
    write_dataset(out / DATA_NAME, {"image_folder": str(cfg.dataset.root), "samples": samples})
    return len(samples)


class LogWriter:
    """Appends records to an AppendLog from a background thread, many per fsync, so a slow
    disk never stalls the event loop. A record is durable once its group is fsync'd; a kill
    loses only records still queued (finished a few milliseconds earlier), which a rerun redoes.
    """

    def __init__(self, log: AppendLog):
        self.log = log
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._drain, name="mmgen-log", daemon=True)
        self.error: BaseException | None = None
        self._thread.start()

    def append(self, record: dict) -> None:
        if self.error:
            raise RuntimeError(f"writing {self.log.path} failed: {self.error}") from self.error
        self._queue.put(record)

    def _drain(self) -> None:
        closing = False
        while not closing:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            closing = batch[-1] is None
            records = [record for record in batch if record is not None]
            try:
                if records:
                    self.log.append_many(records)
            except BaseException as err:  # noqa: BLE001  (reported on the next append / close)
                self.error = err
                return

    def close(self) -> None:
        """Write everything queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()
        if self.error:
            raise RuntimeError(f"writing {self.log.path} failed: {self.error}") from self.error
