"""What a pool is made of, whatever holds it: items that read their image bytes, and a listing.

An item is a loose file, a member of a tar shard or a row of a Hugging Face dataset. Each has a
`name` for logs and reasons, `read_bytes()`, and `provenance()`. Chosen candidates that are not
ordinary files under dataset.root are written once, named by content, under
`<dataset.root>/pool_extracted/`, so prompts, generate, export and the report read plain files.
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from mmgen.contracts import atomic_writer
from mmgen.errors import UserError

EXTRACT_DIR = "pool_extracted"  # under dataset.root: candidates taken out of shards and datasets
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass(frozen=True, slots=True)
class FileItem:
    """An image file; `name` is its path relative to dataset.root, or absolute when outside it."""

    name: str
    path: str  # absolute, as listed (links not resolved, so the file is read through them)
    size: int
    mtime_ns: int
    url: str | None = None  # list-file pools: where the file was downloaded from

    def read_bytes(self) -> bytes:
        return Path(self.path).read_bytes()

    @property
    def suffix(self) -> str:
        return Path(self.path).suffix.lower()

    def provenance(self) -> dict:
        return {"file": self.path, **({"url": self.url} if self.url else {})}


@dataclass(frozen=True, slots=True)
class MemberItem:
    """An image inside an uncompressed tar shard (WebDataset / img2dataset layout)."""

    name: str  # "<shard>#<member>"
    shard: str  # absolute path of the tar file
    member: str  # the member's name in the tar, e.g. "000123.jpg"
    key: str  # the WebDataset sample key, e.g. "000123"
    offset: int  # where the member's data starts in the tar
    size: int

    def read_bytes(self) -> bytes:
        with open(self.shard, "rb") as handle:
            data = os.pread(handle.fileno(), self.size, self.offset)
        if len(data) != self.size:
            raise OSError(f"shard '{self.shard}' ends inside member '{self.member}'")
        return data

    @property
    def suffix(self) -> str:
        return Path(self.member).suffix.lower()

    def provenance(self) -> dict:
        return {"shard": self.shard, "key": self.key, "member": self.member}


@dataclass(frozen=True, slots=True)
class RowItem:
    """An image in a row of a Hugging Face dataset's image column."""

    name: str  # "<dataset>:<split>[<row>]"
    dataset: tuple[str, str, str]  # (path or hub id, split, column)
    row: int

    def read_bytes(self) -> bytes:
        from mmgen.pool.hf_rows import row_bytes

        return row_bytes(self.dataset, self.row)

    @property
    def suffix(self) -> str:
        return ""  # sniffed from the bytes when extracted

    def provenance(self) -> dict:
        path, split, column = self.dataset
        return {"dataset": path, "split": split, "column": column, "row": self.row}


PoolItem = FileItem | MemberItem | RowItem


@dataclass
class Listing:
    """One pool (or one shard job's slice of it), listed."""

    items: list = field(default_factory=list)  # PoolItems, in a stable order
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why) not listable
    ignored: int = 0  # files without an image extension
    hashes: list[str] | None = None  # content hashes, when listing had to read the bytes anyway
    stamps: list[tuple[str, int, int]] = field(default_factory=list)  # (path, size, mtime_ns)
    # of what the listing read: while they stay the same the listing is reused in this process
    digest: str | None = None  # PoolSource.signature, once computed
    logged: bool = False  # its skipped entries were logged (once per listing)


def _sniffed_suffix(data: bytes) -> str:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = (image.format or "").lower()
    except Exception:  # noqa: BLE001  (an unreadable image is never chosen; keep any name)
        kind = ""
    return {"jpeg": ".jpg", "": ".img"}.get(kind, f".{kind}")


def place_candidates(items: list, hashes: list[str], root: Path) -> tuple[list[str], list[dict]]:
    """Paths relative to dataset.root for chosen pool items, and where each came from.

    Files under dataset.root stay where they are; anything else is written once, named by its
    content hash, under root/pool_extracted/.
    """
    paths, sources = [], []
    for item, content in zip(items, hashes):
        if isinstance(item, FileItem) and not os.path.isabs(item.name):
            paths.append(item.name)
            sources.append(item.provenance())
            continue
        data = item.read_bytes()
        suffix = item.suffix if item.suffix in IMAGE_EXTENSIONS else _sniffed_suffix(data)
        relative = f"{EXTRACT_DIR}/{content}{suffix}"
        target = root / relative
        if not target.is_file():
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with atomic_writer(target, "wb") as handle:
                    handle.write(data)
            except OSError as err:
                raise UserError(
                    f"cannot write chosen candidates to '{target.parent}' ({err.strerror}): "
                    "images from tar shards, datasets or folders outside dataset.root are "
                    "extracted there so later stages read ordinary files; make dataset.root "
                    "writable") from None
        paths.append(relative)
        sources.append(item.provenance())
    return paths, sources


# (kind, spec, root) -> the listing: each pool is listed once per process, then re-used while
# the stamps (folder and file mtimes) it recorded stay the same
_LISTINGS: dict[tuple[str, str, str], Listing] = {}


def _unchanged(stamps: list[tuple[str, int, int]]) -> bool:
    try:
        for path, size, mtime_ns in stamps:
            info = os.stat(path)
            if info.st_mtime_ns != mtime_ns or (size and info.st_size != size):
                return False
    except OSError:
        return False
    return True


class PoolSource:
    """One pool behind the common interface; a subclass lists one kind of storage."""

    kind = "pool"

    def __init__(self, spec: str, root: Path, cache_dir: Path):
        self.spec, self.root, self.cache_dir = spec, Path(root), Path(cache_dir)

    @property
    def description(self) -> str:
        return f"{self.kind} '{self.spec}'"

    def list_all(self) -> Listing:
        """Every image entry of the pool, read from storage."""
        raise NotImplementedError

    def listing(self) -> Listing:
        """Every image entry of the pool, listed once per process while nothing changed."""
        key = (self.kind, self.spec, os.path.abspath(self.root))
        cached = _LISTINGS.get(key)
        if cached is None or not _unchanged(cached.stamps):
            cached = _LISTINGS[key] = self.list_all()
        return cached

    def split(self, index: int, count: int) -> Listing:
        """Shard job `index` of `count`: every count-th entry."""
        listing = self.listing()
        hashes = listing.hashes[index::count] if listing.hashes is not None else None
        return Listing(listing.items[index::count], listing.skipped, listing.ignored, hashes,
                       listing.stamps)

    def signature(self) -> str:
        """A digest of what the pool holds, from names, sizes and mtimes (no content read)."""
        listing = self.listing()
        if listing.digest is None:
            digest = hashlib.sha256(self.description.encode())
            for item in listing.items:
                digest.update(f"{item.name}\0{item.size}\0{item.mtime_ns}\n".encode())
            listing.digest = digest.hexdigest()[:16]
        return listing.digest

    def hashes(self, listing: Listing, hasher) -> list[str]:
        """Content hash per listed item (files through the hasher's memo)."""
        if listing.hashes is not None:
            return listing.hashes
        return hasher.hash_listed([item.path for item in listing.items],
                                  [(item.size, item.mtime_ns) for item in listing.items])
