"""Errors a client can cause, each carrying its HTTP status.

Every handler (API Gateway, SageMaker, batch) turns a :class:`ModelfnError` into
``{"error": message}`` with ``.status``; anything else is a bug and becomes a 500 whose body
names only the request id (the trace goes to the log). Messages say what was wrong *and*
how to fix it, because the client reading them cannot see our logs.
"""

from __future__ import annotations


class ModelfnError(Exception):
    """Base class: a request that cannot be served as sent. ``status`` is the HTTP status."""

    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, str]:
        return {"error": self.message}


class BadRequest(ModelfnError):
    """Malformed body or a tensor that does not fit the model's signature."""

    status = 400


class NotFound(ModelfnError):
    """Unknown route, model name or model version."""

    status = 404


class MethodNotAllowed(ModelfnError):
    """Known path, wrong method; ``allow`` becomes the ``Allow`` header."""

    status = 405

    def __init__(self, message: str, allow: str = "") -> None:
        super().__init__(message)
        self.allow = allow


class PayloadTooLarge(ModelfnError):
    """Body over the synchronous payload limit (Lambda: 6 MB)."""

    status = 413


class UnsupportedMediaType(ModelfnError):
    status = 415


class NotReady(ModelfnError):
    """The model is not loaded (yet); retry later."""

    status = 503
