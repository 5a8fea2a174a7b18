"""The API error hierarchy: every failure a client can see is an ``ApiError``.

Each subclass fixes the HTTP status and the ``code`` of docs/contract.md (§4); the server turns
any of them into the documented body in one place (``api/asgi.py``).
"""

from __future__ import annotations


class ApiError(Exception):
    """An error with a documented code, HTTP status and a message safe to show a client."""

    status: int = 500
    code: str = "api_error"
    default_message: str = "internal server error"

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None):
        self.message = message or self.default_message
        self.headers = headers or {}
        super().__init__(self.message)


class BadRequest(ApiError):
    status, code, default_message = 400, "bad_request", "bad request"


class ApiNotImplemented(ApiError):
    status, code, default_message = 400, "api_not_implemented", "unknown action"


class TokenMismatched(ApiError):
    status, code = 400, "token_mismatched"
    default_message = "this token was not granted this API"


class Disabled(ApiError):
    status, code, default_message = 400, "disabled", "the application is disabled"


class InvalidToken(ApiError):
    status, code = 401, "invalid_token"
    default_message = "invalid or missing authorization token"


class TokenExpired(ApiError):
    status, code, default_message = 401, "token_expired", "the token has expired"


class UsedUp(ApiError):
    status, code, default_message = 403, "used_up", "the application's quota is used up"


class Forbidden(ApiError):
    """A valid token without the right to this API: the admin API takes admin tokens only."""

    status, code = 403, "forbidden"
    default_message = "this API needs an admin token (tokens create --admin)"


class NoApi(ApiError):
    status, code, default_message = 404, "no_api", "no API at this path"


class NotFound(ApiError):
    status, code, default_message = 404, "not_found", "not found"


class Conflict(ApiError):
    """The admin API: what is asked clashes with what exists (a name taken, an account still
    holding tasks)."""

    status, code, default_message = 409, "conflict", "conflicts with the current state"


class TooManyRequests(ApiError):
    status, code = 429, "too_many_requests"
    default_message = "too many requests, the rate limit is exceeded"

    def __init__(self, retry_after: float, message: str | None = None):
        self.retry_after = max(1, int(retry_after + 0.999))
        super().__init__(message, headers={"retry-after": str(self.retry_after)})


class InternalError(ApiError):
    status, code, default_message = 500, "api_error", "internal server error"


class BadGateway(ApiError):
    status, code, default_message = 502, "bad_gateway", "the upstream provider failed"


class ServiceUnavailable(ApiError):
    """Always with ``Retry-After`` (the SDK honours it): a 503 is worth retrying, soon."""

    status, code, default_message = 503, "service_unavailable", "service unavailable"

    def __init__(self, message: str | None = None, *, retry_after: int = 1):
        super().__init__(message, headers={"retry-after": str(max(1, retry_after))})


class GatewayTimeout(ApiError):
    status, code = 504, "timeout"
    default_message = "the task did not finish in time; it goes on, retrieve it later"


class StorageFull(ApiError):
    status, code = 507, "storage_full"
    default_message = "the gateway's storage is full; retry later"


# Every code a client can see, by code: the OpenAPI document is checked against it.
ERRORS_BY_CODE: dict[str, type[ApiError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        ApiNotImplemented,
        TokenMismatched,
        Disabled,
        InvalidToken,
        TokenExpired,
        UsedUp,
        Forbidden,
        NoApi,
        NotFound,
        Conflict,
        TooManyRequests,
        InternalError,
        BadGateway,
        ServiceUnavailable,
        GatewayTimeout,
        StorageFull,
    )
}
