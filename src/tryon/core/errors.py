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


#: Marks a message as a transient fault. The Hugging Face serving toolkit answers every handler
#: exception with HTTP 400, so the workflow recognises a retryable endpoint fault by this text.
RETRYABLE_MARKER = "[retryable]"


class DependencyUnavailable(RuntimeError):
    """A service the handler depends on (S3) failed transiently: throttling, a 5xx, a time-out.

    Not the client's fault: the local server answers 503, and the workflow retries the step
    (the message carries :data:`RETRYABLE_MARKER`, which survives the toolkit's 400).
    """

    def __init__(self, message: str) -> None:
        super().__init__(f"{RETRYABLE_MARKER} {message}")
