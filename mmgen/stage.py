"""What every stage app shares: its output folder, stats.json, file digests and the launcher.
Which stages run, when, and the shared cache: mmgen/runner.py."""
from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from mmgen.contracts import file_sha256, read_json, write_json
from mmgen.schema import register

register()
# sweep folders are named by their overrides, minus quotes (icl='3') and slashes (task_file=a/b)
OmegaConf.register_new_resolver(
    "mmgen_dirname", lambda name: re.sub(r"['\"]", "", name).replace("/", "_"), replace=True)


def _default_out_dir(name: str) -> str:
    """outputs/<name> for a single run; a multirun job's own folder (hydra.sweep.dir/subdir)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return HydraConfig.get().runtime.output_dir
    return f"outputs/{name}"


OmegaConf.register_new_resolver("mmgen_out_dir", _default_out_dir, replace=True)
log = logging.getLogger(__name__)
# config groups whose options are numbers (icl=3, caps_per_image=1,3,5)
NUMERIC_GROUPS = ("icl", "caps_per_image")

MARKER_DIR = ".mmgen"


@functools.lru_cache(maxsize=4096)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def file_digest(path: Path) -> str:
    """sha256 of a file, read once per process while its size and mtime stay the same."""
    stat = path.stat()
    return _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def file_digests(paths: list[Path]) -> dict[str, str]:
    """Content digests of the files that exist among `paths`, by path."""
    return {str(path): file_digest(path) for path in paths if path.is_file()}


def out_dir(cfg: DictConfig) -> Path:
    """This experiment's output folder, created on first use."""
    path = Path(cfg.paths.out_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def update_stats(cfg: DictConfig, section: str, values: dict) -> None:
    """Merge `values` into stats.json[section] under a lock, atomically."""
    stats_path = out_dir(cfg) / "stats.json"
    lock_path = out_dir(cfg) / MARKER_DIR / "stats.lock"
    lock_path.parent.mkdir(exist_ok=True)
    with FileLock(str(lock_path)):
        stats = read_json(stats_path) if stats_path.exists() else {}
        stats[section] = values
        write_json(stats_path, stats)


def _quote_numeric_choice(arg: str) -> str:
    match = re.fullmatch(rf"([+~]*(?:{'|'.join(NUMERIC_GROUPS)}))=([0-9]+(?:,[0-9]+)*)", arg)
    if not match:
        return arg
    return match[1] + "=" + ",".join(f"'{choice}'" for choice in match[2].split(","))


def launch(hydra_entry: Callable[[], None]) -> None:
    """Run a stage's Hydra entry, letting numeric group choices (icl=3, icl=1,3,5) through.

    Hydra reads `icl=3` as the integer 3, which it refuses as a config group choice; quoting
    the choice makes it the option name the user meant.
    """
    sys.argv = [sys.argv[0]] + [_quote_numeric_choice(arg) for arg in sys.argv[1:]]
    from mmgen.errors import guard
    from mmgen.vlm.secrets import refuse_keys_in_overrides

    def checked_entry() -> None:
        refuse_keys_in_overrides(sys.argv[1:])  # before Hydra saves them in .hydra/
        hydra_entry()

    guard(checked_entry)  # user errors: one message, no traceback (HYDRA_FULL_ERROR=1 shows it)
