"""Errors a person reads: a bad input or config (UserError) and a clean, expected stop (StageStop)."""


class UserError(ValueError):
    """A bad input, config value or missing file: printed as one short message, no traceback."""


class StageStop(Exception):
    """An expected early stop (a dry run wrote its requests, a shard job did its slice): exit 0."""
