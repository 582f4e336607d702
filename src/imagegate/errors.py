"""One error hierarchy. Each protocol maps these to its own codes (see protocols/)."""

from __future__ import annotations


class ImagegateError(Exception):
    """Base of every error imagegate raises.

    ``code`` is imagegate's stable code; ``vendor_code`` is the upstream's own code when the
    error came from a vendor; ``field`` names the request field at fault, when there is one.
    """

    code = "error"
    exit_code = 4

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        vendor_code: str | None = None,
        request_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.vendor_code = vendor_code
        self.request_id = request_id
        self.http_status = http_status

    def __str__(self) -> str:
        parts = [self.message]
        if self.vendor_code:
            parts.append(f"[{self.vendor_code}]")
        if self.request_id:
            parts.append(f"(request id {self.request_id})")
        return " ".join(parts)


class InvalidRequest(ImagegateError):
    """The body could not be read: bad JSON, a wrong type, an unknown field."""

    code = "invalid_request"
    exit_code = 2


class ValidationError(InvalidRequest):
    """A parameter breaks one of the model's documented rules."""

    code = "invalid_parameter"


class UnknownModel(InvalidRequest):
    code = "model_not_found"


class NotConfigured(ImagegateError):
    """The model's vendor has no credentials here."""

    code = "not_configured"
    exit_code = 3


class AuthError(ImagegateError):
    code = "invalid_api_key"
    exit_code = 3


class PermissionDenied(ImagegateError):
    code = "permission_denied"
    exit_code = 3


class RateLimited(ImagegateError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ContentRejected(ImagegateError):
    code = "content_rejected"


class UpstreamError(ImagegateError):
    """The upstream failed: a 5xx, a transport error, or an answer we could not read."""

    code = "upstream_error"


class SubmitOutcomeUnknown(UpstreamError):
    """A submit was sent but its answer was lost (read timeout, dropped connection, a success
    body that could not be read): the task may exist upstream, and be billed.

    Never resent automatically, by the adapters or the gateway's engine: no vendor here takes
    an idempotency key, so a second submit could create (and bill) a second task.
    """

    code = "submit_outcome_unknown"


class TaskFailed(ImagegateError):
    """The task reached FAILED (or UNKNOWN) upstream."""

    code = "task_failed"


class TaskNotFound(ImagegateError):
    code = "task_not_found"


class UnsupportedOperation(ImagegateError):
    code = "unsupported_operation"


class DownloadError(UpstreamError):
    """A result file could not be fetched whole."""

    code = "download_failed"


class Timeout(ImagegateError):
    code = "timeout"
    exit_code = 5
