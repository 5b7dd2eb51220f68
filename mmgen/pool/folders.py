"""Pools of loose files: a folder (walked, symlinks followed) or a text file listing paths.

Symlinked files and folders are followed. A link that loops or points nowhere is skipped with
its reason, never fatal; a folder link back to one of its own parents is not walked again.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from mmgen.errors import UserError
from mmgen.pool.items import IMAGE_EXTENSIONS, FileItem, Listing, PoolSource

URL_SCHEMES = ("http://", "https://", "s3://", "gs://")


def _name(path: str, root: str) -> str:
    """`path` relative to dataset.root in POSIX form, or absolute when outside it."""
    relative = os.path.relpath(path, root)
    if relative == ".." or relative.startswith(".." + os.sep) or os.path.isabs(relative):
        return path
    return Path(relative).as_posix()


def _stat_problem(path: str, err: OSError) -> str:
    """Why a listed path cannot be read, in the words of the link or file at fault."""
    if err.errno == errno.ELOOP:
        return "symlink loop (the link leads back to itself)"
    if err.errno == errno.ENOENT and os.path.islink(path):
        return f"dangling symlink (its target '{os.readlink(path)}' does not exist)"
    if err.errno == errno.ENOENT:
        return "file not found"
    return f"cannot read it: {err.strerror}"


class FolderPool(PoolSource):
    """Image files under a folder, recursively; hidden files and folders are left out."""

    kind = "folder"

    def __init__(self, spec: str, root: Path, cache_dir: Path, base: Path):
        super().__init__(spec, root, cache_dir)
        self.base = os.path.abspath(base)

    def list_all(self) -> Listing:
        listing = Listing()
        found: list[FileItem] = []
        top_name = _name(self.base, os.path.abspath(self.root))  # names: root-relative or absolute

        def visit(directory: str, name: str, parents: dict[tuple[int, int], str]) -> None:
            try:
                entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
            except OSError as err:
                listing.skipped.append((name, f"folder not readable: {err.strerror}"))
                return
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                shown = entry.name if name == "." else f"{name}/{entry.name}"
                try:
                    info = entry.stat()  # follows links
                except OSError as err:
                    listing.skipped.append((shown, _stat_problem(entry.path, err)))
                    continue
                if stat.S_ISDIR(info.st_mode):
                    identity = (info.st_dev, info.st_ino)
                    if identity in parents:
                        listing.skipped.append(
                            (shown, f"symlink loop (leads back to its parent '{parents[identity]}')"))
                        continue
                    listing.stamps.append((entry.path, 0, info.st_mtime_ns))
                    visit(entry.path, shown, {**parents, identity: shown})
                elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                    found.append(FileItem(shown, entry.path, info.st_size, info.st_mtime_ns))
                else:
                    listing.ignored += 1

        top = os.stat(self.base)
        listing.stamps.append((self.base, 0, top.st_mtime_ns))
        visit(self.base, top_name, {(top.st_dev, top.st_ino): top_name})
        listing.items = sorted(found, key=lambda item: item.name)
        return listing


class ListPool(PoolSource):
    """A text file naming one image per line: `PATH`, or `URL<TAB>PATH` for a downloaded URL.

    Relative paths are relative to the list file's folder; blank lines and `#` comments are
    skipped. The listed order is kept (duplicates dropped).
    """

    kind = "list file"

    def __init__(self, spec: str, root: Path, cache_dir: Path, list_path: Path):
        super().__init__(spec, root, cache_dir)
        self.list_path = os.path.abspath(list_path)

    def list_all(self) -> Listing:
        listing, seen = Listing(), set()
        root, folder = os.path.abspath(self.root), os.path.dirname(self.list_path)
        info = os.stat(self.list_path)
        listing.stamps.append((self.list_path, info.st_size, info.st_mtime_ns))
        try:
            lines = Path(self.list_path).read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise UserError(f"pool list file '{self.list_path}' is not UTF-8 text (byte "
                            f"{err.start}): list one image path per line") from None
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            url, _, written = line.rpartition("\t")
            where = f"{self.spec} line {number}"
            if not url and written.startswith(URL_SCHEMES):
                listing.skipped.append((where, (f"URL '{written}' without a local file: download "
                                                "it first (e.g. img2dataset) and list "
                                                "'URL<TAB>local path'")))
                continue
            path = os.path.normpath(os.path.join(folder, written))
            try:
                file_info = os.stat(path)
            except OSError as err:
                listing.skipped.append((f"{where} ('{written}')", _stat_problem(path, err)))
                continue
            if not stat.S_ISREG(file_info.st_mode):
                listing.skipped.append((f"{where} ('{written}')", "not a file"))
            elif path not in seen:
                seen.add(path)
                listing.items.append(FileItem(_name(path, root), path, file_info.st_size,
                                              file_info.st_mtime_ns, url.strip() or None))
        return listing
