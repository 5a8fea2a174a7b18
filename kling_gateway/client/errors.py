"""Typed errors of the SDK: one class per error code of docs/contract.md (§4).

Codes and HTTP statuses are taken from the wire table (``kling_gateway.protocol.errors``), so
the SDK and the server cannot drift apart. ``error_for`` picks the class: by the body's
``code`` when it is a documented one, otherwise by the HTTP status, otherwise ``UnknownError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kling_gateway.protocol import errors as _wire


class KlingError(Exception):
    """Base of every error the SDK raises."""

    code: str = "unknown_error"
    status: int | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        trace_id: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or type(self).code
        self.status = status if status is not None else type(self).status
        self.trace_id = trace_id
        self.body = body

    def __str__(self) -> str:
        where = f"HTTP {self.status} " if self.status is not None else ""
        trace = f" (trace_id {self.trace_id})" if self.trace_id else ""
        return f"{where}{self.code}: {self.message}{trace}"


class BadRequestError(KlingError):
    code, status = _wire.BadRequest.code, _wire.BadRequest.status


class ApiNotImplementedError(KlingError):
    code, status = _wire.ApiNotImplemented.code, _wire.ApiNotImplemented.status


class TokenMismatchedError(KlingError):
    code, status = _wire.TokenMismatched.code, _wire.TokenMismatched.status


class DisabledError(KlingError):
    code, status = _wire.Disabled.code, _wire.Disabled.status


class InvalidTokenError(KlingError):
    code, status = _wire.InvalidToken.code, _wire.InvalidToken.status


class TokenExpiredError(KlingError):
    code, status = _wire.TokenExpired.code, _wire.TokenExpired.status


class UsedUpError(KlingError):
    code, status = _wire.UsedUp.code, _wire.UsedUp.status


class ForbiddenError(KlingError):
    """403 ``forbidden``: the admin API called without an admin token."""

    code, status = _wire.Forbidden.code, _wire.Forbidden.status


class NoApiError(KlingError):
    code, status = _wire.NoApi.code, _wire.NoApi.status


class NotFoundError(KlingError):
    """404 ``not_found``: e.g. a video file that does not exist."""

    code = _wire.NotFound.code
    status: int | None = _wire.NotFound.status


class ConflictError(KlingError):
    """409 ``conflict`` (the admin API): a name taken, an account still holding tasks."""

    code, status = _wire.Conflict.code, _wire.Conflict.status


class TaskNotFoundError(KlingError):
    """``tasks.wait`` on an id the server does not know for this token (it answered ``{}``:
    the task is missing, deleted or another user's). Not an HTTP error: ``status`` is None."""

    code = _wire.NotFound.code

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} not found")
        self.task_id = task_id


class RateLimitError(KlingError):
    """429: ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one."""

    code, status = _wire.TooManyRequests.code, _wire.TooManyRequests.status

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ApiError(KlingError):
    """500 ``api_error``: an unexpected fault of the server."""

    code, status = _wire.InternalError.code, _wire.InternalError.status


class BadGatewayError(KlingError):
    code, status = _wire.BadGateway.code, _wire.BadGateway.status


class ServiceUnavailableError(KlingError):
    code, status = _wire.ServiceUnavailable.code, _wire.ServiceUnavailable.status


class GatewayTimeoutError(KlingError):
    code, status = _wire.GatewayTimeout.code, _wire.GatewayTimeout.status


class StorageFullError(KlingError):
    code, status = _wire.StorageFull.code, _wire.StorageFull.status


class UnknownError(KlingError):
    """An error response whose code and HTTP status are not in the contract (or a bad body)."""


class TransportError(KlingError):
    """The request never got an HTTP response (connection refused, reset, timed out...)."""

    code = "transport_error"


class WaitTimeoutError(KlingError, TimeoutError):
    """``tasks.wait`` ran out of time; ``record`` is the last record seen (``{}`` if none)."""

    code = "wait_timeout"

    def __init__(self, message: str, *, record: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.record = dict(record)


_DOCUMENTED: tuple[type[KlingError], ...] = (
    BadRequestError,
    ApiNotImplementedError,
    TokenMismatchedError,
    DisabledError,
    InvalidTokenError,
    TokenExpiredError,
    UsedUpError,
    ForbiddenError,
    NoApiError,
    NotFoundError,
    ConflictError,
    RateLimitError,
    ApiError,
    BadGatewayError,
    ServiceUnavailableError,
    GatewayTimeoutError,
    StorageFullError,
)
ERRORS_BY_CODE: dict[str, type[KlingError]] = {cls.code: cls for cls in _DOCUMENTED}
# For a status with several codes (400, 401) the first documented one stands for the status.
ERRORS_BY_STATUS: dict[int, type[KlingError]] = {}
for _cls in _DOCUMENTED:
    if _cls.status is not None:
        ERRORS_BY_STATUS.setdefault(_cls.status, _cls)


def error_for(
    status: int,
    code: str | None,
    message: str,
    *,
    trace_id: str | None = None,
    retry_after: float | None = None,
    body: Any = None,
) -> KlingError:
    """The typed error for an error response; the server's own ``code`` is kept as given."""
    cls = ERRORS_BY_CODE.get(code or "") or ERRORS_BY_STATUS.get(status, UnknownError)
    fallback_code = f"http_{status}" if cls is UnknownError else cls.code
    kwargs: dict[str, Any] = {
        "code": code or fallback_code,
        "status": status,
        "trace_id": trace_id,
        "body": body,
    }
    if cls is RateLimitError:
        return RateLimitError(message, retry_after=retry_after, **kwargs)
    return cls(message, **kwargs)
