"""Errors a person reads: a bad input or config (UserError) and a clean, expected stop (StageStop).

Hydra catches whatever a task raises, writes "Error executing job with overrides" and prints a
trimmed traceback. For a user error that traceback hides the one line that matters, and for a
clean stop it is wrong. So conf/config.yaml registers `ReportUserErrors` as a Hydra callback:
when a job ends with a user, contract, config or input error it prints the message alone
(stderr and the job's log file) and marks the job handled; a StageStop prints its message and
counts as success. `guard` (called by `mmgen.stage.launch`) then exits 1 if any job was
handled as an error. Bugs keep Hydra's traceback, and HYDRA_FULL_ERROR=1 shows every traceback.
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback

FULL_ERROR = "HYDRA_FULL_ERROR"
INPUT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
HINT = f"(for the traceback, rerun with {FULL_ERROR}=1)"


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


class ReportUserErrors(Callback):
    """Hydra callback: user errors print as one message, StageStop as success (see above)."""

    failed_jobs: ClassVar[list[str]] = []  # messages of handled failures in this process, read by guard

    def on_job_end(self, config: Any, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status != JobStatus.FAILED:
            return
        error = job_return._return_value  # the exception; .return_value would re-raise it
        stop = next((link for link in _chain(error) if isinstance(link, StageStop)), None)
        message = None if stop or os.environ.get(FULL_ERROR) == "1" else user_message(error)
        if stop is not None:
            _log_to_files(str(stop), logging.INFO)
            print(str(stop), flush=True)
        elif message is not None:
            _log_to_files(message, logging.ERROR)
            sys.stderr.write(f"error: {message}\n{HINT}\n")
            ReportUserErrors.failed_jobs.append(message)
        else:
            return  # a bug: Hydra prints the traceback
        job_return.status, job_return.return_value = JobStatus.COMPLETED, None


def guard(entry: Callable[[], None]) -> None:
    """Run a Hydra entry; exit 1 after a user error (reported as one message), else return."""
    ReportUserErrors.failed_jobs.clear()
    try:
        entry()
    except UserError as error:  # raised before Hydra started (the command-line checks)
        if os.environ.get(FULL_ERROR) == "1":
            raise
        sys.stderr.write(f"error: {error}\n{HINT}\n")
        sys.exit(1)
    if ReportUserErrors.failed_jobs:
        sys.exit(1)
