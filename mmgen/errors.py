"""Errors a person reads: a bad input or config (UserError) and a clean, expected stop (StageStop).

Hydra catches whatever a task raises and prints a trimmed traceback, except for its own
"compact" errors, which it prints as their message alone. conf/config.yaml registers
`ReportUserErrors` as a Hydra callback: when a job ends with a user, contract, config or input
error, it swaps the exception for a compact one carrying the message, so Hydra prints that
message (and the job's overrides) without a traceback and exits 1. This works for jobs run in
other processes too (joblib, submitit), as the swapped error travels back with the job's
result. A StageStop prints its message and counts as success. Bugs keep Hydra's traceback, and
HYDRA_FULL_ERROR=1 shows every traceback.
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from hydra.experimental.callback import Callback

FULL_ERROR = "HYDRA_FULL_ERROR"
INPUT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
HINT = f"Set the environment variable {FULL_ERROR}=1 for a complete stack trace."  # as Hydra


class UserError(ValueError):
    """A bad input, config value or missing file: printed as one short message, no traceback."""


class StageStop(Exception):
    """An expected early stop (a dry run wrote its requests, a shard job did its slice): exit 0."""


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    """The error, then its causes (instantiate and launchers wrap the real one)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)


def _hydra_config_error(error: BaseException) -> bool:
    """Hydra's own composition and override errors, and a `_target_` that does not import."""
    from hydra.errors import (
        ConfigCompositionException,
        InstantiationException,
        OverrideParseException,
        SearchPathException,
    )

    if isinstance(error, InstantiationException):
        return str(error).startswith("Error locating target")
    return isinstance(error, (ConfigCompositionException, OverrideParseException,
                              SearchPathException))


def user_message(error: BaseException) -> str | None:
    """The short message for a user, contract, config or input error; None for a bug."""
    from omegaconf.errors import OmegaConfBaseException

    for link in _chain(error):
        if isinstance(link, UserError):
            return str(link)
        if _hydra_config_error(link) or isinstance(link, OmegaConfBaseException):
            cause = link.__cause__
            extra = f"\n{cause}" if isinstance(cause, OmegaConfBaseException) else ""
            return f"config: {link}{extra}"
        if isinstance(link, INPUT_OS_ERRORS):
            return str(link)
    return None


def _log_to_files(message: str, level: int) -> None:
    """Append the message to the job's log file (Hydra's file handler), not to the console."""
    record = logging.LogRecord("mmgen", level, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


class ReportedError(CompactHydraException):
    """A user error, reduced to its message so that Hydra prints no traceback."""


class ReportUserErrors(Callback):
    """Hydra callback: user errors print as one message, StageStop as success (see above)."""

    def on_job_end(self, config: Any, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status != JobStatus.FAILED:
            return
        error = job_return._return_value  # the exception; .return_value would re-raise it
        stop = next((link for link in _chain(error) if isinstance(link, StageStop)), None)
        if stop is not None:
            _log_to_files(str(stop), logging.INFO)
            print(str(stop), flush=True)
            job_return.status, job_return.return_value = JobStatus.COMPLETED, None
            return
        message = None if os.environ.get(FULL_ERROR) == "1" else user_message(error)
        if message is not None:  # else a bug: Hydra prints its traceback
            _log_to_files(message, logging.ERROR)
            job_return.return_value = ReportedError(message)


def guard(entry: Callable[[], None]) -> None:
    """Run a Hydra entry; a UserError raised before Hydra starts (the command-line checks)
    prints as one message and exits 1, like the errors Hydra reports."""
    try:
        entry()
    except UserError as error:
        if os.environ.get(FULL_ERROR) == "1":
            raise
        sys.stderr.write(f"{error}\n\n{HINT}\n")
        sys.exit(1)
