"""Load, validate and write the files passed between stages (DESIGN.md "Data contracts").

Every loader raises ContractError naming the file, the record and the field. Every writer is
atomic (temp file + rename), and the append log tolerates a torn last line.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Any

from mmgen.errors import UserError

HUMAN_ROLES = {"human", "user"}
ANSWER_ROLES = {"gpt", "assistant"}
ROLE_SPELLINGS = HUMAN_ROLES | ANSWER_ROLES | {"system"}
IMAGE_TAG_TEXT = re.compile(r"<image>")


class ContractError(UserError):
    """A data file breaks its contract; the message names file, record and field."""

    def __init__(self, path: str | Path, record: str, message: str):
        super().__init__(f"{path}: {record}: {message}")


# ---------------------------------------------------------------- atomic writes


@contextmanager
def atomic_writer(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a temp file beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; outputs are meant to be read by others
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: Any, indent: int | None = 2) -> None:
    """Write JSON atomically."""
    with atomic_writer(path) as handle:
        json.dump(data, handle, indent=indent, ensure_ascii=False)
        handle.write("\n")


def write_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    """Write one JSON object per line atomically, streaming; returns the number written."""
    count = 0
    with atomic_writer(path) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
    return count


def read_json(path: str | Path) -> Any:
    """Read a JSON file, turning a syntax error into a ContractError with line and column."""
    path = Path(path)
    if not path.is_file():
        raise ContractError(path, "file", "not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (Windows editors) is harmless
    except UnicodeDecodeError as err:
        raise ContractError(path, _byte_position(data, err.start),
                            f"is not UTF-8 (byte 0x{data[err.start]:02x}: {err.reason}); "
                            "save the file as UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ContractError(path, f"line {err.lineno} column {err.colno}", f"invalid JSON: {err.msg}")


def _byte_position(data: bytes, offset: int) -> str:
    """'byte offset N (line L column C)' for a byte offset, so an editor can find it."""
    line = data.count(b"\n", 0, offset) + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return f"byte offset {offset} (line {line} column {column})"


def file_sha256(path: str | Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- append log


def iter_jsonl(path: str | Path, tolerate_torn_tail: bool = False) -> Iterator[dict]:
    """Yield the objects of a JSONL file; a torn (unterminated) last line is skipped if allowed."""
    path = Path(path)
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            torn = not raw.endswith(b"\n")
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                if torn and tolerate_torn_tail:
                    return
                if isinstance(err, UnicodeDecodeError):
                    raise ContractError(path, f"line {line_number} byte offset "
                                        f"{handle.tell() - len(raw) + err.start}",
                                        f"is not UTF-8 ({err.reason}); save the file as UTF-8"
                                        ) from None
                raise ContractError(path, f"line {line_number}", f"invalid JSON: {err}")
            if not isinstance(record, dict):
                raise ContractError(path, f"line {line_number}", "expected a JSON object")
            yield record


def read_log(path: str | Path) -> list[dict]:
    """Read an append log; a missing file is empty and a torn last line (a crash) is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    return list(iter_jsonl(path, tolerate_torn_tail=True))


def repair_log(path: str | Path) -> None:
    """Cut a torn last line off an append log so that new records start on a fresh line."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as handle:
        data = handle.read()
        if data.endswith(b"\n"):
            return
        tail_start = data.rfind(b"\n") + 1
        try:  # a kill between the record and its newline: the record is whole, keep it
            json.loads(data[tail_start:])
            handle.write(b"\n")
        except (json.JSONDecodeError, UnicodeDecodeError):
            handle.truncate(tail_start)


class AppendLog:
    """An append-only JSONL log: each record is one write + flush + fsync, so a kill loses none."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_log(self.path)
        self._handle = self.path.open("a", encoding="utf-8")

    def append(self, record: dict) -> None:
        self.append_many([record])

    def append_many(self, records: Iterable[dict]) -> None:
        """Append records with one flush + fsync (group commit for fast producers)."""
        self._handle.write("".join(json.dumps(record, ensure_ascii=False, separators=(",", ":"))
                                   + "\n" for record in records))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# ---------------------------------------------------------------- field checks


def _require(record: dict, key: str, kind: type | tuple, path, where: str) -> Any:
    if not isinstance(record, dict):
        raise ContractError(path, where, f"expected an object, got {type(record).__name__}")
    if key not in record:
        raise ContractError(path, where, f"missing key '{key}'")
    value = record[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ContractError(
            path, f"{where} field '{key}'", f"expected {names}, got {type(value).__name__}"
        )
    return value


def check_relative_path(value: str, path, where: str) -> str:
    """An image path must stay inside its folder: relative, no '..' parts."""
    pure = PurePosixPath(value.replace("\\", "/"))
    if not value or pure.is_absolute() or ".." in pure.parts:
        raise ContractError(path, where, f"image path '{value}' escapes its folder; "
                            "use a path relative to the folder, without '..'")
    return value


def normalize_conversation(conversations: list, path, where: str) -> list[dict]:
    """Check a conversation's turns and spell roles as human/gpt; it must hold an answer turn."""
    if not conversations:
        raise ContractError(path, f"{where} field 'conversations'", "is empty")
    turns = []
    for turn_index, turn in enumerate(conversations):
        turn_where = f"{where} conversations[{turn_index}]"
        role = _require(turn, "from", str, path, turn_where)
        value = _require(turn, "value", str, path, turn_where)
        if role not in ROLE_SPELLINGS:
            raise ContractError(path, f"{turn_where} field 'from'",
                                f"unknown role '{role}'; use human/gpt or user/assistant")
        role = "human" if role in HUMAN_ROLES else "gpt" if role in ANSWER_ROLES else role
        turns.append({"from": role, "value": value})
    first_answer = next((i for i, turn in enumerate(turns) if turn["from"] == "gpt"), None)
    if first_answer is None:
        raise ContractError(path, f"{where} field 'conversations'",
                            "has no answer turn (from 'gpt' or 'assistant')")
    question = next((turn["value"] for turn in turns[:first_answer] if turn["from"] == "human"),
                    None)
    if question is None or not IMAGE_TAG_TEXT.sub("", question).strip():
        raise ContractError(path, f"{where} field 'conversations'",
                            "has an answer but no question before it (a turn from 'human' or "
                            "'user' with text besides <image>); add the question or drop the "
                            "sample")
    return turns


def _check_samples(samples: list, path, require_image: bool = True) -> list[dict]:
    if not samples and require_image:
        raise ContractError(path, "field 'samples'", "is empty; at least one sample is needed")
    seen_ids: dict[str, int] = {}
    checked = []
    for index, sample in enumerate(samples):
        where = f"sample {index}"
        if require_image or (isinstance(sample, dict) and "image_1" in sample):
            image = _require(sample, "image_1", str, path, where)
            check_relative_path(image, path, f"{where} field 'image_1'")
        if "id" in sample:
            sample_id = _require(sample, "id", (str, int), path, where)
            if sample_id in seen_ids:
                raise ContractError(path, f"{where} field 'id'",
                                    f"duplicate id '{sample_id}' (also sample {seen_ids[sample_id]})")
            seen_ids[sample_id] = index
        conversations = _require(sample, "conversations", list, path, where)
        checked.append({**sample, "conversations": normalize_conversation(conversations, path, where)})
    return checked


# ---------------------------------------------------------------- reference set and task file


def validate_reference(data: Any, path: str | Path) -> dict:
    """Check a reference set {image_folder, dataset_description, samples}; roles normalised."""
    if not isinstance(data, dict):
        raise ContractError(path, "top level", f"expected an object, got {type(data).__name__}")
    image_folder = _require(data, "image_folder", str, path, "top level")
    if image_folder:
        check_relative_path(image_folder, path, "field 'image_folder'")
    _require(data, "dataset_description", str, path, "top level")
    samples = _require(data, "samples", list, path, "top level")
    return {**data, "samples": _check_samples(samples, path)}


def validate_task(data: Any, path: str | Path) -> dict:
    """Check a seed-format task file: a reference set plus subgroups."""
    task = validate_reference(data, path)
    subgroups = _require(task, "subgroups", list, path, "top level")
    if not subgroups:
        raise ContractError(path, "field 'subgroups'", "is empty; at least one subgroup is needed")
    num_samples = len(task["samples"])
    for group_index, group in enumerate(subgroups):
        where = f"subgroup {group_index}"
        keyword = _require(group, "keyword", str, path, where)
        where = f"subgroup {group_index} ('{keyword}')"
        indices = _require(group, "reference_sample_idx", list, path, where)
        for position, sample_index in enumerate(indices):
            if not isinstance(sample_index, int) or isinstance(sample_index, bool):
                raise ContractError(path, f"{where} field 'reference_sample_idx[{position}]'",
                                    f"expected int, got {type(sample_index).__name__}")
            if not 0 <= sample_index < num_samples:
                raise ContractError(path, f"{where} field 'reference_sample_idx[{position}]'",
                                    f"index {sample_index} is out of range: the file has "
                                    f"{num_samples} samples (valid 0..{num_samples - 1})")
        candidates = group.get("candidate_image_paths", [])
        if not isinstance(candidates, list):
            raise ContractError(path, f"{where} field 'candidate_image_paths'",
                                f"expected list, got {type(candidates).__name__}")
        for position, candidate in enumerate(candidates):
            if not isinstance(candidate, str):
                raise ContractError(path, f"{where} field 'candidate_image_paths[{position}]'",
                                    f"expected str, got {type(candidate).__name__}")
            check_relative_path(candidate, path, f"{where} field 'candidate_image_paths[{position}]'")
        scores = group.get("candidate_scores")
        if scores is not None and (not isinstance(scores, list) or len(scores) != len(candidates)):
            raise ContractError(path, f"{where} field 'candidate_scores'",
                                "must be a list as long as 'candidate_image_paths'")
    return task


def load_reference(path: str | Path) -> dict:
    """Load and validate a reference set (LLaVA style)."""
    return validate_reference(read_json(path), path)


def load_task(path: str | Path) -> dict:
    """Load and validate a task file (seed format)."""
    return validate_task(read_json(path), path)


def write_task(path: str | Path, task: dict) -> None:
    """Validate and write a task file atomically, in the seed's format."""
    write_json(path, validate_task(task, path))


def sample_image_path(reference: dict, sample: dict) -> str:
    """A reference sample's image path relative to dataset.root (image_folder joined in)."""
    folder = reference.get("image_folder") or ""
    return str(PurePosixPath(folder) / sample["image_1"]) if folder else sample["image_1"]


def question_and_answer(sample: dict) -> tuple[str, str]:
    """The first human turn and the first answer turn of a (normalised) sample."""
    turns = sample["conversations"]
    question = next((t["value"] for t in turns if t["from"] == "human"), "")
    answer = next(t["value"] for t in turns if t["from"] == "gpt")
    return question, answer


# ---------------------------------------------------------------- prompts and generations


PROMPT_KEYS = {"id": str, "keyword": str, "icl_indices": list, "content": list}
GENERATION_STATUSES = {"ok", "failed"}


def validate_prompt(record: dict, path, line_number: int) -> dict:
    """Check one prompt record: id, keyword, icl_indices, ordered content parts, candidate."""
    where = f"line {line_number}"
    for key, kind in PROMPT_KEYS.items():
        _require(record, key, kind, path, where)
    where = f"line {line_number} (prompt '{record['id']}')"
    for part_index, part in enumerate(record["content"]):
        part_where = f"{where} content[{part_index}]"
        part_type = _require(part, "type", str, path, part_where)
        if part_type == "text":
            _require(part, "text", str, path, part_where)
        elif part_type == "image":
            check_relative_path(_require(part, "path", str, path, part_where), path,
                                f"{part_where} field 'path'")
        else:
            raise ContractError(path, f"{part_where} field 'type'",
                                f"unknown part type '{part_type}'; use 'text' or 'image'")
    candidate = record.get("candidate_image")
    if candidate is not None:
        check_relative_path(_require(record, "candidate_image", str, path, where), path,
                            f"{where} field 'candidate_image'")
    return record


def iter_prompts(path: str | Path) -> Iterator[dict]:
    """Stream and validate prompt records; duplicate ids are an error."""
    seen: set[str] = set()
    for line_number, record in enumerate(iter_jsonl(path), start=1):
        validate_prompt(record, path, line_number)
        if record["id"] in seen:
            raise ContractError(path, f"line {line_number} field 'id'",
                                f"duplicate prompt id '{record['id']}'")
        seen.add(record["id"])
        yield record


def write_prompts(path: str | Path, records: Iterable[dict]) -> int:
    """Write prompt records atomically, streaming; returns the count."""
    return write_jsonl(path, records)


def validate_generation(record: dict, path, line_number: int) -> dict:
    """Check one generations-log record."""
    where = f"line {line_number}"
    _require(record, "id", str, path, where)
    status = _require(record, "status", str, path, where)
    if status not in GENERATION_STATUSES:
        raise ContractError(path, f"{where} field 'status'",
                            f"unknown status '{status}'; expected ok or failed")
    if status == "ok":
        _require(record, "items", list, path, where)
    else:
        _require(record, "error_class", str, path, where)
    return record


def read_generations(path: str | Path) -> dict[str, dict]:
    """The latest record per prompt id from the generations log (later lines win)."""
    latest: dict[str, dict] = {}
    for line_number, record in enumerate(read_log(path), start=1):
        latest[validate_generation(record, path, line_number)["id"]] = record
    return latest


# ---------------------------------------------------------------- dataset


def validate_dataset(data: Any, path: str | Path) -> dict:
    """Check a LLaVA dataset {image_folder, samples: [{id, image_1?, conversations, ...}]}."""
    if not isinstance(data, dict):
        raise ContractError(path, "top level", f"expected an object, got {type(data).__name__}")
    _require(data, "image_folder", str, path, "top level")
    samples = _require(data, "samples", list, path, "top level")
    for index, sample in enumerate(samples):
        _require(sample, "id", (str, int), path, f"sample {index}")
    return {**data, "samples": _check_samples(samples, path, require_image=False)}  # may be empty


def load_dataset(path: str | Path) -> dict:
    """Load and validate a generated dataset (data.json / filtered.json)."""
    return validate_dataset(read_json(path), path)


def write_dataset(path: str | Path, dataset: dict) -> None:
    """Validate and write a dataset atomically."""
    write_json(path, validate_dataset(dataset, path))


# ---------------------------------------------------------------- eval set


def load_eval_set(path: str | Path) -> dict:
    """Load an eval set: a reference set whose samples may add `split` and `options`.

    Every sample gets a string `id` (its own, else its index), which predictions refer to.
    `split` (e.g. ChartQA's human/augmented) is on every sample or on none; `options` is a list
    of option texts (lettered A, B, ...) or a {letter: text} object. Answers may not be empty.
    """
    data = load_reference(path)
    ids: dict[str, int] = {}
    for index, sample in enumerate(data["samples"]):
        where = f"sample {index}"
        sample["id"] = str(sample.get("id", index))
        if sample["id"] in ids:
            raise ContractError(path, f"{where} field 'id'", f"id '{sample['id']}' is also "
                                f"sample {ids[sample['id']]}'s (an id or an index); give unique ids")
        ids[sample["id"]] = index
        if not question_and_answer(sample)[1].strip():
            raise ContractError(path, f"{where} field 'conversations'", "the answer is empty")
        if ("split" in sample) != ("split" in data["samples"][0]):
            raise ContractError(path, f"{where} field 'split'", "is on some samples only; "
                                "give every sample a split, or none")
        if "split" in sample and not _require(sample, "split", str, path, where).strip():
            raise ContractError(path, f"{where} field 'split'", "is empty")
        options = sample.get("options")
        if options is not None:
            texts = options.values() if isinstance(options, dict) else options
            if not isinstance(options, (list, dict)) or len(options) < 2 or not all(
                    isinstance(text, str) and text.strip() for text in texts):
                raise ContractError(path, f"{where} field 'options'", "expected a list of at "
                                    "least two option texts, or an object {letter: text}")
    return data
