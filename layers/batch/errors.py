"""Why an object ends in ``errors/`` instead of ``out/``.

:class:`BatchInputError` is a problem with the object itself (format, shape, a bad row, too
big for the time left): retrying cannot help, so it becomes a *final* error record and the
event succeeds. Any other exception is ours or the platform's (S3 down, out of memory): the
event fails and is retried.
"""

from __future__ import annotations


class BatchInputError(Exception):
    """The object cannot be turned into results; ``reason`` says what is wrong and the fix."""

    def __init__(self, reason: str, **details) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details
