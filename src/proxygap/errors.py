"""Errors a user can fix. The CLI prints each on one line and exits with code 2."""


class ProxygapError(Exception):
    """Base of every user-facing error (bad config, bad checkpoint, bad input)."""


class CheckpointError(ProxygapError):
    """A model or training checkpoint is missing, incomplete or corrupt."""


class WriteError(ProxygapError, OSError):
    """An output could not be written (disk full, read-only, no permission). Still an OSError."""


def shape_error_text(e: BaseException) -> str:
    """What a KeyError/TypeError/... raised while reading a results file says about its shape, on one line."""
    return f"missing key {e.args[0]!r}" if isinstance(e, KeyError) and e.args else f"{type(e).__name__}: {e}"
