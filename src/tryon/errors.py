"""Error types shared by the model handlers, the Lambda functions and the CLI."""

from __future__ import annotations


class RequestError(ValueError):
    """A client error: the request (or an input it names) is invalid.

    The message names the offending field and, where there is one, the limit. The local
    endpoint server maps it to HTTP 400; the workflow records it as a permanent failure.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message
